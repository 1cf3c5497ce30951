"""The job queue over the jobs table: claim with a lease, heartbeat, finish, retry, expire.

Claiming is a compare-and-set (``UPDATE ... WHERE id = :id AND state IN (queued, failed)``), so
two workers can never both own a job, on SQLite or PostgreSQL; on PostgreSQL the candidate is
selected ``FOR UPDATE SKIP LOCKED`` so workers do not queue behind each other's row locks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement

from dicomnode.db import Job, JobEvent, JobKind, JobState, Series, utcnow
from dicomnode.errors import JobLeaseLost
from dicomnode.jobs import ClaimedJob
from dicomnode.logs import get_logger
from dicomnode.retry import RetryPolicy
from pipeline.reasons import Reason

log = get_logger(__name__)

LEASE_EXPIRED = "lease expired (worker stopped)"
_CLAIMABLE = (JobState.QUEUED, JobState.FAILED)


def _event(session: Session, job_id: int, event: str, attempt: int, worker: str | None,
           detail: str | None = None) -> None:
    session.add(JobEvent(job_id=job_id, event=event, attempt=attempt, worker=worker, detail=detail))


def _codes(reasons: Sequence[Reason]) -> str:
    """The reasons as one line of a job event's text ("slice_count,gap")."""
    return ",".join(reasons)


def enqueue(session: Session, series: Series, *, kind: JobKind, max_attempts: int,
            reasons: Sequence[Reason] = (), detail: str | None = None) -> Job:
    """Add a queued job for ``series`` in the caller's transaction. An ABSTAIN job is queued too,
    with the protocol rule's ``reasons``: the worker makes and sends the abstention SR, then the
    job ends ``abstained``."""
    job = Job(series=series, kind=kind, state=JobState.QUEUED, reasons=list(reasons) or None,
              reason_detail=detail, max_attempts=max_attempts)
    session.add(job)
    session.flush()
    _event(session, job.id, "created", 0, None, _codes(reasons) or None)
    return job


def claim(sessions: sessionmaker, worker: str, lease_s: float) -> ClaimedJob | None:
    """Take the oldest runnable job, or None. The job is RUNNING under ``worker``'s lease."""
    with sessions() as session:
        now = utcnow()
        candidates = session.scalars(
            select(Job.id)
            .where(Job.state.in_(_CLAIMABLE), Job.not_before <= now)
            .order_by(Job.not_before, Job.id)
            .limit(8)
            .with_for_update(skip_locked=True)
        ).all()
        for job_id in candidates:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_(_CLAIMABLE))
                .values(state=JobState.RUNNING, lease_owner=worker,
                        lease_expires_at=now + dt.timedelta(seconds=lease_s),
                        attempts=Job.attempts + 1, updated_at=now)
            )
            if result.rowcount == 1:
                job = session.get(Job, job_id)
                assert job is not None
                _event(session, job_id, "claimed", job.attempts, worker)
                session.commit()
                session.refresh(job)
                return ClaimedJob.from_row(job)
        session.commit()
    return None


def heartbeat(sessions: sessionmaker, job: ClaimedJob, lease_s: float) -> None:
    """Extend the lease; raises JobLeaseLost if the job is no longer ours."""
    with sessions.begin() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.RUNNING, Job.lease_owner == job.lease_owner)
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
        )
        if result.rowcount != 1:
            raise JobLeaseLost(f"job {job.id} is no longer leased by {job.lease_owner}")


Also = Callable[[Session], object] | None


def _finish(sessions: sessionmaker, job: ClaimedJob, values: dict, event: str, detail: str | None,
            also: Also = None) -> None:
    """End the attempt if the lease is still ours; ``also`` runs in the same transaction
    (the outbox rows of the job's results)."""
    with sessions.begin() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.RUNNING, Job.lease_owner == job.lease_owner)
            .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow(), **values)
        )
        if result.rowcount != 1:
            raise JobLeaseLost(f"job {job.id} was reclaimed before {job.lease_owner} finished it")
        _event(session, job.id, event, job.attempt, job.lease_owner, detail)
        if also is not None:
            also(session)


def complete(sessions: sessionmaker, job: ClaimedJob, result: dict, also: Also = None) -> None:
    _finish(sessions, job, {"state": JobState.DONE, "result": result, "last_error": None}, "done", None, also)


def abstain(sessions: sessionmaker, job: ClaimedJob, reasons: Sequence[Reason], detail: str,
            also: Also = None) -> None:
    """The series or the pipeline refused the input: final, with the reasons."""
    _finish(sessions, job, {"state": JobState.ABSTAINED, "reasons": list(reasons), "reason_detail": detail},
            "abstained", f"{_codes(reasons)}: {detail}", also)


def fail(sessions: sessionmaker, job: ClaimedJob, error: str, policy: RetryPolicy) -> JobState:
    """Record a failed attempt: back to the queue after a backoff, or dead when exhausted."""
    wait = policy.next_wait(job.attempt)
    if wait is None:
        _finish(sessions, job, {"state": JobState.DEAD, "last_error": error}, "dead", error)
        return JobState.DEAD
    values = {"state": JobState.FAILED, "last_error": error,
              "not_before": utcnow() + dt.timedelta(seconds=wait)}
    _finish(sessions, job, values, "failed", f"retry in {wait:.0f} s: {error}")
    return JobState.FAILED


def stalled_because(job: Job, owner_is_dead: Callable[[str | None], bool], now: dt.datetime) -> str | None:
    """Why no live worker holds this running job (None: one does)."""
    if job.lease_expires_at is None or job.lease_expires_at < now:
        return LEASE_EXPIRED
    return "worker process gone" if owner_is_dead(job.lease_owner) else None


def requeue_expired(sessions: sessionmaker, policy: RetryPolicy,
                    owner_is_dead: Callable[[str | None], bool] = lambda owner: False) -> int:
    """Jobs whose worker died go back to the queue, or die if out of attempts: those whose lease
    expired, and at once those whose owner ``owner_is_dead`` says is gone (a crashed predecessor
    on this machine, see ``dicomnode.liveness``)."""
    now = utcnow()
    count = 0
    with sessions.begin() as session:
        for job in session.scalars(select(Job).where(Job.state == JobState.RUNNING)).all():
            why = stalled_because(job, owner_is_dead, now)
            if why is None:
                continue
            still_ours = (or_(Job.lease_expires_at < now, Job.lease_expires_at.is_(None)) if why == LEASE_EXPIRED
                          else Job.lease_owner == job.lease_owner)
            count += _requeue(session, job, why, still_ours, now)
    return count


def _requeue(session: Session, job: Job, why: str, still_ours: ColumnElement[bool], now: dt.datetime) -> int:
    dead = job.attempts >= job.max_attempts
    new_state = JobState.DEAD if dead else JobState.QUEUED
    result = cast(CursorResult, session.execute(
        update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING, still_ours)
        .values(state=new_state, lease_owner=None, lease_expires_at=None, last_error=why, updated_at=now)))
    if result.rowcount != 1:
        return 0
    event = "lease_expired" if why == LEASE_EXPIRED else "lease_abandoned"
    _event(session, job.id, event, job.attempts, job.lease_owner,
           "dead: out of attempts" if dead else "returned to the queue")
    log.warning(f"job_{event}", job_id=job.id, attempts=job.attempts, new_state=str(new_state),
                worker=job.lease_owner)
    return 1
