"""Counts of studies, series, jobs and outbox items per state, for `spinenode status`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.db import Instance, Job, JobState, OutboxItem, OutboxState, Series, SeriesState, Study, utcnow
from dicomnode.liveness import owner_is_dead
from dicomnode.queue import stalled_because
from pipeline.reasons import Reason


def _by_state(session, column, states) -> dict[str, int]:  # noqa: ANN001
    counts = {str(s): 0 for s in states}
    for state, n in session.execute(select(column, func.count()).group_by(column)):
        counts[str(state)] = n
    return counts


def _abstained(job_id: int, series_uid: str, reasons: list[Reason]) -> dict[str, Any]:
    """``reasons``: the codes; ``reason``: the same comma-joined, the line `status` printed before
    reasons were a list (kept for scripts that read it)."""
    return {"job_id": job_id, "series_uid": series_uid, "reasons": [str(r) for r in reasons],
            "reason": ",".join(reasons)}


def _stalled(session: Session) -> list[dict[str, Any]]:
    """Running jobs that no live worker holds (the next worker poll returns them to the queue)."""
    now = utcnow()
    rows = session.execute(select(Job, Series.series_uid).join(Series, Series.id == Job.series_id)
                           .where(Job.state == JobState.RUNNING)).all()
    return [{"job_id": job.id, "series_uid": series_uid, "worker": job.lease_owner, "why": why}
            for job, series_uid in rows if (why := stalled_because(job, owner_is_dead, now)) is not None]


def collect(sessions: sessionmaker) -> dict[str, Any]:
    with sessions() as session:
        jobs_by_state = _by_state(session, Job.state, JobState)
        dead = session.execute(
            select(Job.id, Series.series_uid, Job.last_error)
            .join(Series, Series.id == Job.series_id).where(Job.state == JobState.DEAD)
        ).all()
        abstained = session.execute(
            select(Job.id, Series.series_uid, Job.reasons)
            .join(Series, Series.id == Job.series_id).where(Job.state == JobState.ABSTAINED)
        ).all()
        dead_out = session.execute(
            select(OutboxItem.id, OutboxItem.destination, OutboxItem.sop_instance_uid, OutboxItem.last_error)
            .where(OutboxItem.state == OutboxState.DEAD)).all()
        return {
            "dead_outbox": [{"id": i, "destination": d, "sop_instance_uid": u, "error": e} for i, d, u, e in dead_out],
            "studies": session.scalar(select(func.count()).select_from(Study)),
            "instances": {
                "total": session.scalar(select(func.count()).select_from(Instance)),
                "late": session.scalar(select(func.count()).select_from(Instance).where(Instance.late)),
            },
            "series": _by_state(session, Series.state, SeriesState),
            "jobs": jobs_by_state,
            "outbox": _by_state(session, OutboxItem.state, OutboxState),
            "dead_jobs": [{"job_id": j, "series_uid": s, "error": e} for j, s, e in dead],
            "abstained_jobs": [_abstained(j, s, r or []) for j, s, r in abstained],
            "stalled_jobs": _stalled(session),
        }


def render(report: dict[str, Any]) -> str:
    lines = [f"studies    {report['studies']}",
             f"instances  {report['instances']['total']} ({report['instances']['late']} after decision)"]
    for section in ("series", "jobs", "outbox"):
        parts = "  ".join(f"{k}={v}" for k, v in report[section].items())
        lines.append(f"{section:<10} {parts}")
    for job in report["stalled_jobs"]:
        lines.append(f"stalled job {job['job_id']} series {job['series_uid']}: {job['why']} ({job['worker']})")
    for job in report["dead_jobs"]:
        lines.append(f"dead job {job['job_id']} series {job['series_uid']}: {job['error']}")
    for item in report["dead_outbox"]:
        lines.append(f"dead result {item['sop_instance_uid']} to {item['destination']}: {item['error']} "
                     "(spinenode resend)")
    for job in report["abstained_jobs"]:
        lines.append(f"abstained job {job['job_id']} series {job['series_uid']}: {job['reason']}")
    return "\n".join(lines)
