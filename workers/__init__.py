"""Offgrid's Celery app and the per-process resources its tasks use."""
