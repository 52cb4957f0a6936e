"""Offgrid's push domain: device registry, fan-out planning, providers. No Flask, no Celery."""
