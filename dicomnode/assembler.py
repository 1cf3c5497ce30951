"""The study assembler: applies the protocol rule to series as they arrive.

Runs as an apscheduler interval job (the sweep of every receiving series, which also ends quiet
periods) and is woken by the C-STORE handler: the first instance stored after a run schedules the
next run ``WAKE_DELAY_S`` later, and that run decides only the series stored since, so a series
that meets the rule is queued within a fraction of a second, and a stream of instances costs a
few runs per second rather than one per instance.

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
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dicomnode import queue
from dicomnode.config import ProtocolConfig, WorkerConfig
from dicomnode.db import Instance, JobKind, Series, SeriesState, utcnow
from dicomnode.logs import get_logger
from dicomnode.protocol import Outcome, SliceInfo, evaluate
from pipeline.reasons import Reason, parse_reasons

log = get_logger(__name__)


_SLICE_COLUMNS = (Instance.sop_class_uid, Instance.position, Instance.orientation, Instance.pixel_spacing,
                  Instance.slice_thickness, Instance.temporal_position, Instance.rows, Instance.columns)


def _slices(instances: Sequence[Any]) -> list[SliceInfo]:
    return [SliceInfo(position=i.position, orientation=i.orientation, pixel_spacing=i.pixel_spacing,
                      slice_thickness=i.slice_thickness, temporal_position=i.temporal_position,
                      rows=i.rows, columns=i.columns) for i in instances]


WAKE_DELAY_S = 0.25  # instances that arrive within this time of each other are decided in one run


class Assembler:
    def __init__(self, sessions: sessionmaker, protocol: ProtocolConfig, worker: WorkerConfig) -> None:
        self.sessions = sessions
        self.protocol = protocol
        self.worker = worker
        self._lock = threading.Lock()  # guards the three fields below
        self._dirty: set[int] = set()  # series stored since the last run
        self._full_requested = False
        self._wake_pending = False
        self._run_lock = threading.Lock()
        self.last_run = time.monotonic()  # last decision pass (for /healthz)
        self.wake: Callable[[], None] = lambda: None  # set by the scheduler wiring: run in WAKE_DELAY_S
        self.on_queued: Callable[[], None] = lambda: None  # a job was queued (committed): wake the workers

    def notify(self, series_id: int) -> None:
        """Called after each stored instance: decide its series in the next run (one wake per run)."""
        with self._lock:
            self._dirty.add(series_id)
            if self._wake_pending:
                return
            self._wake_pending = True
        self.wake()

    def run(self, full: bool = False) -> None:
        """Decide the series stored since the last run; ``full`` (the interval timer): every series
        still receiving, which is how quiet periods end. Repeats while instances keep arriving."""
        with self._lock:
            self._full_requested |= full
        if not self._run_lock.acquire(blocking=False):
            return  # the run going on takes what was notified or requested
        try:
            while True:
                more = self._decide_pending()
                self.last_run = time.monotonic()  # also while a stream keeps this run going
                if not more:
                    break
                time.sleep(WAKE_DELAY_S)
        finally:
            self._run_lock.release()

    def _decide_pending(self) -> bool:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            full, self._full_requested = self._full_requested, False
            self._wake_pending = bool(dirty or full)
            if not self._wake_pending:
                return False
        self.sweep(only=None if full else dirty)
        return True

    def sweep(self, now: dt.datetime | None = None, only: set[int] | None = None) -> dict[str, int]:
        """Decide every series that is still receiving (or those of ``only``); returns counts per decision."""
        now = now or utcnow()
        counts = {"complete": 0, "ignored": 0, "abstained": 0, "pending": 0}
        query = select(Series.id).where(Series.state == SeriesState.RECEIVING)
        if only is not None:
            query = query.where(Series.id.in_(only))
        with self.sessions() as session:
            ids = session.scalars(query).all()
        for series_id in ids:
            with self.sessions.begin() as session:
                decision = self._decide(session, series_id, now)
            counts[decision] += 1
            if decision in ("complete", "abstained"):
                self.on_queued()
        return counts

    def _decide(self, session: Session, series_id: int, now: dt.datetime) -> str:
        series = session.get(Series, series_id, with_for_update=True)
        if series is None or series.state is not SeriesState.RECEIVING:
            return "pending"
        instances = session.execute(select(*_SLICE_COLUMNS).where(Instance.series_id == series_id)).all()
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
