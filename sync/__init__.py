"""Offgrid's sync domain: records, batches, checkpoints. Plain Python: no Flask, no Celery."""
