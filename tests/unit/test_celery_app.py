"""The worker's Celery app imports without any environment and reads its settings on first
use, where a missing setting stops the process (never Celery's defaults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import workers.celery_app as w, tasks.sync, tasks.push, tasks.maintenance
assert not w.celery_app.configured
try:
    w.celery_app.conf.broker_url
except Exception as exc:
    print(type(exc).__name__, exc)
else:
    print("configured with", w.celery_app.conf.broker_url)
"""


def test_the_worker_app_imports_without_environment_and_refuses_to_run_without_settings() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SettingsError"), done.stdout
    assert "is required but not set" in done.stdout
