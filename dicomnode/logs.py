"""Logging: structlog events with key/values; JSON lines to a file, readable lines on the console.

Event names are stable (``instance_stored``, ``series_complete``, ``job_claimed`` ...) so that
people and scripts can grep for them. No patient name, ID or birth date ever goes into a log
line: the ``drop_patient_identifiers`` processor removes any key that names one, as a guard
behind the rule that callers log UIDs only.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

import structlog

_PHI_KEYS = ("patient_name", "patientname", "patient_id", "patientid", "birth", "patient_birth")


def drop_patient_identifiers(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(k in key.lower().replace("-", "_") for k in _PHI_KEYS):
            event[key] = "[removed]"
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    drop_patient_identifiers,
]


def configure(level: str = "INFO", json_file: Path | None = None, console: bool = True) -> None:
    """Route structlog and the standard library (pynetdicom, apscheduler) to the same handlers."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    if console:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer(colors=False), foreign_pre_chain=_SHARED))
        root.addHandler(handler)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(json_file, encoding="utf-8")
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(), foreign_pre_chain=_SHARED))
        root.addHandler(handler)
    # pynetdicom logs dataset contents (patient names among them) at DEBUG: keep it to warnings
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
