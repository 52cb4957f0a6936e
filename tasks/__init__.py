"""Celery tasks: thin wrappers that call the domain in `sync/` and `push/`."""
