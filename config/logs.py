"""Logging: JSON lines (or, for a person at a terminal, one readable line per record) with a
request id that follows a request from the API into its tasks.

Periodic jobs run every few seconds; when one did nothing, Celery's lines about it (beat sent
it, the worker received it, it succeeded) are DEBUG, so an idle system is quiet at INFO.

The API takes `X-Request-ID` from the caller (or makes one), echoes it, and sets it in a
context variable; publishing a task copies it into the task's message headers; the worker sets
it again before the task runs. Every log line of that request and its tasks carries it.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Console(logging.Formatter):
    """`12:00:01.123 INFO  logger: message  key=value … [request id]`, for `LOG_FORMAT=console`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED and k != "data"
        )  # Celery's `data` repeats the message's own arguments
        rid = request_id.get()
        line = f"{moment} {record.levelname:<5} {record.name}: {record.getMessage()}"
        line += f"  {extras}" if extras else ""
        line += f" [{rid}]" if rid else ""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_PERIODIC_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def _periodic_chatter(record: logging.LogRecord) -> bool:
    """Celery's routine lines about a periodic (`maintenance.*`) task, and beat's `Sending due
    task` lines: said every few seconds whatever the job found."""
    if record.name == "celery.beat":
        return str(record.msg).startswith("Scheduler: Sending due task")
    if record.name in _PERIODIC_TASK_LOGGERS and record.levelno == logging.INFO:
        args = record.args if isinstance(record.args, dict) else {}
        return str(args.get("name", "")).startswith("maintenance.")
    return False


class PeriodicChatterAtDebug(logging.Filter):
    """Lowers `_periodic_chatter` records to DEBUG (dropped unless the level is DEBUG)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if not _periodic_chatter(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.level <= logging.DEBUG


def configure_logging(level: str, fmt: str = "json") -> None:
    """Send every logger's records to stderr at `level`, as JSON lines or `console` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Console() if fmt == "console" else JsonLines())
    handler.addFilter(PeriodicChatterAtDebug(logging.getLevelName(level)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: one line per push send drowns the rest.
    logging.getLogger("httpx").setLevel(level if level == "DEBUG" else "WARNING")
