"""The status page: what the node received, what it is doing, what failed and why.

Served at ``/`` by the HTTP side of `serve` (``dicomnode.web``), rendered on the server from the
database with a Jinja2 template (``templates/status.html``, autoescaped) and refreshing itself every
``REFRESH_S`` seconds; no JavaScript. It shows the counts `spinenode status` prints, the last jobs
with their finding and stage timings, abstentions and dead letters with their reasons, the outbox
per destination, and the key image of the last finished job (``/jobs/<id>/key.png``). It shows
UIDs and job numbers, never a patient's name, ID or birth date: the database holds none of them.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dicomnode import status
from dicomnode.config import Config
from dicomnode.db import Job, JobState, OutboxItem, Series, utcnow

REFRESH_S = 10
RECENT_JOBS = 20
KEY_IMAGE_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage

_ENV = Environment(loader=PackageLoader("dicomnode", "templates"), autoescape=select_autoescape(["html"]))


def _finding(result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    verdict, cls = result.get("verdict"), result.get("classification")
    if verdict:
        text = str(verdict.get("finding", ""))
        if verdict.get("reasons"):
            text += " (" + ", ".join(str(r).replace("_", " ") for r in verdict["reasons"]) + ")"
    else:
        text = str(cls.get("class", "")) if cls else ""
    if cls and cls.get("probability_metastasis") is not None:
        text += f", P(metastasis) {float(cls['probability_metastasis']):.2f}"
    return text


def _recent_jobs(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(Job, Series.series_uid).join(Series, Series.id == Job.series_id)
                           .order_by(Job.updated_at.desc(), Job.id.desc()).limit(RECENT_JOBS)).all()
    out = []
    for job, series_uid in rows:
        result = job.result or {}
        out.append({"id": job.id, "series_uid": series_uid, "state": str(job.state), "attempts": job.attempts,
                    "updated": job.updated_at.strftime("%Y-%m-%d %H:%M:%S"), "finding": _finding(result),
                    "timings": {k: float(v) for k, v in (result.get("timings_s") or {}).items()},
                    "seconds": result.get("seconds"),
                    "why": ", ".join(str(r) for r in job.reasons or []) or (job.last_error or "")})
    return out


def _outbox_by_destination(session: Session) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dest, state, n in session.execute(select(OutboxItem.destination, OutboxItem.state, func.count())
                                          .group_by(OutboxItem.destination, OutboxItem.state)):
        out.setdefault(dest, {})[str(state)] = n
    return out


def _key_image_path(result: dict[str, Any] | None) -> str | None:
    """Where the job's key image was written (relative to data_dir), from the outputs it recorded."""
    for output in (result or {}).get("outputs") or []:
        if str(output.get("sop_class_uid")) == KEY_IMAGE_CLASS:
            return str(output["path"])
    return None


def _key_image_job(session: Session) -> int | None:
    done = session.execute(select(Job.id, Job.result).where(Job.state == JobState.DONE)
                           .order_by(Job.updated_at.desc(), Job.id.desc()).limit(RECENT_JOBS)).all()
    return next((job_id for job_id, result in done if _key_image_path(result)), None)


def collect(sessions: sessionmaker) -> dict[str, Any]:
    """Everything the page shows (JSON-able)."""
    report = status.collect(sessions)
    with sessions() as session:
        report["recent_jobs"] = _recent_jobs(session)
        report["outbox_by_destination"] = _outbox_by_destination(session)
        report["key_image_job"] = _key_image_job(session)
    return report


def render(cfg: Config, sessions: sessionmaker, scp_port: int | None = None) -> str:
    """The page; ``scp_port`` is the port the SCP bound (the configured one when not given)."""
    report = collect(sessions)
    return _ENV.get_template("status.html").render(
        report=report, ae_title=cfg.node.ae_title, port=scp_port or cfg.node.port, refresh_s=REFRESH_S,
        now=utcnow().replace(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def key_image_png(cfg: Config, sessions: sessionmaker, job_id: int) -> bytes | None:
    """The key image the job made, as PNG; None when the job made none (or its file is gone)."""
    import pydicom
    from PIL import Image

    with sessions() as session:
        rel = _key_image_path(session.scalar(select(Job.result).where(Job.id == job_id)))
    path = None if rel is None else Path(cfg.data_dir) / rel
    if path is None or not path.is_file():
        return None
    ds = pydicom.dcmread(path)
    buffer = io.BytesIO()
    Image.fromarray(ds.pixel_array).save(buffer, format="PNG")
    return buffer.getvalue()
