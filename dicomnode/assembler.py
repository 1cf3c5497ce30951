"""The study assembler: applies the protocol rule to series as they arrive.

Runs as an apscheduler interval job (the sweep that also catches quiet periods) and is woken at
once by the C-STORE handler after each stored instance, so a series that meets the rule is
queued without waiting for the timer.

Instances that arrive after a series was decided:

* series **complete** (a job exists): stored and recorded with ``late = true`` and counted in
  ``series.late_instances``; the job analyses exactly the instances that completed the series,
  so a re-send of the whole series gives no second job.
* series **abstained** (incomplete after the quiet period): the series re-opens (state
  ``receiving``) and is evaluated again, so a slice that arrives late still completes it.
* series **ignored**: stored and recorded; never processed.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicomnode import queue
from dicomnode.config import ProtocolConfig, WorkerConfig
from dicomnode.db import Instance, JobKind, Series, SeriesState, utcnow
from dicomnode.logs import get_logger
from dicomnode.protocol import Outcome, SliceInfo, evaluate
from pipeline.reasons import Reason, parse_reasons

log = get_logger(__name__)


def _slices(instances: list[Instance]) -> list[SliceInfo]:
    return [SliceInfo(position=i.position, orientation=i.orientation, pixel_spacing=i.pixel_spacing,
                      slice_thickness=i.slice_thickness, temporal_position=i.temporal_position,
                      rows=i.rows, columns=i.columns) for i in instances]


class Assembler:
    def __init__(self, sessions: sessionmaker, protocol: ProtocolConfig, worker: WorkerConfig) -> None:
        self.sessions = sessions
        self.protocol = protocol
        self.worker = worker
        self._dirty = threading.Event()
        self._run_lock = threading.Lock()
        self.wake: Callable[[], None] = lambda: None  # set by the scheduler wiring

    def notify(self, series_id: int) -> None:
        """Called after each stored instance: sweep again as soon as possible."""
        self._dirty.set()
        self.wake()

    def run(self) -> None:
        """One sweep, repeated while instances arrived during it."""
        if not self._run_lock.acquire(blocking=False):
            return  # a sweep is running; it will see the dirty flag
        try:
            self._dirty.set()
            while self._dirty.is_set():
                self._dirty.clear()
                self.sweep()
        finally:
            self._run_lock.release()

    def sweep(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Decide every series that is still receiving; returns counts per decision."""
        now = now or utcnow()
        counts = {"complete": 0, "ignored": 0, "abstained": 0, "pending": 0}
        with self.sessions() as session:
            ids = session.scalars(select(Series.id).where(Series.state == SeriesState.RECEIVING)).all()
        for series_id in ids:
            with self.sessions.begin() as session:
                decision = self._decide(session, series_id, now)
            counts[decision] += 1
        return counts

    def _decide(self, session: Session, series_id: int, now: dt.datetime) -> str:
        series = session.get(Series, series_id, with_for_update=True)
        if series is None or series.state is not SeriesState.RECEIVING:
            return "pending"
        instances = list(session.scalars(select(Instance).where(Instance.series_id == series_id)))
        verdict = evaluate(series.attrs or {}, {i.sop_class_uid for i in instances},
                           _slices(instances), self.protocol)
        ctx = {"series_uid": series.series_uid, "instances": len(instances)}
        if verdict.outcome is Outcome.COMPLETE:
            series.state, series.decided_at, series.reasons = SeriesState.COMPLETE, now, None
            series.reason_detail = verdict.detail
            job = queue.enqueue(session, series, kind=JobKind.ANALYSE,
                                max_attempts=self.worker.max_attempts)
            log.info("series_complete", job_id=job.id, phases=verdict.phases, **ctx)
            return "complete"
        if verdict.outcome is Outcome.IGNORED:
            series.state, series.decided_at = SeriesState.IGNORED, now
            series.reasons, series.reason_detail = [Reason(verdict.reason)], verdict.detail
            log.info("series_ignored", reason=verdict.reason, detail=verdict.detail, **ctx)
            return "ignored"
        quiet_for = (now - series.last_received_at).total_seconds()
        if quiet_for < self.protocol.quiet_period_s:
            return "pending"
        reasons = list(parse_reasons(verdict.reasons))  # the protocol rule's codes become enums here
        series.state, series.decided_at = SeriesState.ABSTAINED, now
        series.reasons, series.reason_detail = reasons, verdict.detail
        job = queue.enqueue(session, series, kind=JobKind.ABSTAIN, max_attempts=self.worker.max_attempts,
                            reasons=reasons, detail=verdict.detail)
        log.warning("series_abstained", job_id=job.id, reason=",".join(reasons), detail=verdict.detail,
                    quiet_for_s=round(quiet_for, 1), **ctx)
        return "abstained"
