"""gunicorn settings (read from the working directory): keep Prometheus samples of exited
worker processes from being served as if they were alive."""

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
