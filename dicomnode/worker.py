"""The worker loop: claim a job, run it to one outcome, save that outcome once and log it once.

The series is read once, here (``pipeline.volume.read_series``); loading, analysis and the
result builders then work on those datasets in memory. A job comes to one :class:`Outcome`:

* ``done``: an ``analyse`` job the pipeline analysed; SEG + SR + key image, checked to carry the
  input's patient and study.
* ``abstained``: an ``abstain`` job (the assembler refused the series), or an ``analyse`` job the
  pipeline refuses (no lesion, input out of range, undecodable pixels...): the abstention SR with
  the coded reasons.
* ``failed``: anything else (including a file that cannot be read at all: without its header
  there is no patient to address an abstention to); retried with backoff, then ``dead``.

The outcome is then persisted in one place: its objects written, the job ended and one outbox
row per destination added in the same transaction (a failure to write them fails the job), and
logged in one place (``job_done``, ``job_abstention_sent``, ``job_abstained``, ``job_failed``,
or ``job_lease_lost`` when the job was reclaimed meanwhile).

A heartbeat thread extends the job's lease while it runs; if the worker dies, the job returns to
the queue (``queue.requeue_expired``, run by every worker): at once when the dead worker ran on
this machine (a restarted node finds its predecessor's leases, ``dicomnode.liveness``), else when
its lease expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

import pipeline
from dicomnode import metrics, outbox, queue
from dicomnode.config import Config
from dicomnode.db import Job, JobKind, JobState
from dicomnode.errors import JobLeaseLost
from dicomnode.jobs import ClaimedJob
from dicomnode.liveness import owner_is_dead, worker_name
from dicomnode.logs import get_logger
from dicomnode.retry import RetryPolicy
from dicomnode.wakeup import Wakeup
from pipeline.reasons import Reason

log = get_logger(__name__)

StageResult = tuple[dict[str, Any], list[Dataset]]
Stage = Callable[[Sequence[Dataset]], StageResult]
"""The analysis of an ``analyse`` job: the series' datasets (as read, in storage order) in, the
job's result summary and the objects to send out; raises ``pipeline.InputRejected`` for input it
will not analyse."""

PROTOCOL_REFUSAL = "refused by the protocol rule"


def analysis_stage(cfg: Config) -> Stage:
    """Load the series, segment and measure it, and build the result objects."""

    def stage(datasets: Sequence[Dataset]) -> StageResult:
        from pipeline.outputs.build import build_results

        t = time.perf_counter()
        volume = pipeline.load_series(datasets)
        loaded = time.perf_counter() - t
        analysis = pipeline.analyse(volume, use_unet=cfg.worker.use_unet, precision=cfg.worker.unet_precision,
                                    use_radiomics=cfg.worker.use_radiomics,
                                    use_classifier=cfg.worker.use_classifier)
        t = time.perf_counter()
        outputs = build_results(analysis)
        summary = {"stage": "analyse"} | analysis.summary()
        summary["timings_s"] = ({"load": round(loaded, 3)} | summary["timings_s"]
                                | {"build_outputs": round(time.perf_counter() - t, 3)})
        return summary, outputs

    return stage


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one attempt at a job came to, decided before anything is saved.

    ``state``: DONE (``outputs``, ``result``), ABSTAINED (``outputs``: the abstention SR;
    ``reasons``, ``detail``) or FAILED (``detail``: the error); once persisted, DEAD when the
    retries are spent. ``lease_lost``: set when the job was reclaimed before it could be saved.
    """

    state: JobState
    outputs: tuple[Dataset, ...] = ()
    result: dict[str, Any] | None = None
    reasons: tuple[Reason, ...] = ()
    detail: str = ""
    lease_lost: str | None = None


def _failure(exc: Exception) -> Outcome:
    return Outcome(state=JobState.FAILED, detail=f"{type(exc).__name__}: {exc}")


def _abstention(datasets: Sequence[Dataset], reasons: Sequence[Reason], detail: str) -> Outcome:
    from pipeline.outputs.build import build_abstention

    return Outcome(state=JobState.ABSTAINED, outputs=(build_abstention(datasets, reasons),),
                   reasons=tuple(reasons), detail=detail)


class Worker:
    def __init__(self, cfg: Config, sessions: sessionmaker, *, name: str | None = None,
                 stage: Stage | None = None, wakeup: Wakeup | None = None,
                 on_results: Callable[[], None] = lambda: None) -> None:
        """``wakeup`` ends the wait between polls early (rung by the assembler of this process; whoever
        gives one rings it at shutdown too); ``on_results`` is called when results enter the outbox."""
        self.cfg = cfg
        self.sessions = sessions
        self.wakeup = wakeup
        self.on_results = on_results
        self.name = name or worker_name()
        self.last_seen = time.monotonic()  # last poll or heartbeat (for /healthz)
        self.stage = stage or analysis_stage(cfg)
        self.policy = RetryPolicy(max_attempts=cfg.worker.max_attempts,
                                  base_s=cfg.worker.retry_base_s, max_s=cfg.worker.retry_max_s)
        if cfg.worker.torch_threads:
            import torch

            torch.set_num_threads(cfg.worker.torch_threads)

    def run(self, stop: threading.Event) -> None:
        log.info("worker_started", worker=self.name)
        while not stop.is_set():
            self.last_seen = time.monotonic()
            try:
                queue.requeue_expired(self.sessions, self.policy, owner_is_dead)
                job = queue.claim(self.sessions, self.name, self.cfg.worker.lease_s)
            except Exception as exc:  # noqa: BLE001 - database briefly unavailable: wait, retry
                log.error("worker_poll_failed", worker=self.name, error=repr(exc))
                stop.wait(self.cfg.worker.poll_interval_s * 5)
                continue
            if job is None:
                (self.wakeup or stop).wait(self.cfg.worker.poll_interval_s)
                continue
            self.process(job)
        log.info("worker_stopped", worker=self.name)

    def run_once(self) -> bool:
        """Process one job if there is one (for tests and scripts); True if one ran."""
        queue.requeue_expired(self.sessions, self.policy, owner_is_dead)
        job = queue.claim(self.sessions, self.name, self.cfg.worker.lease_s)
        if job is None:
            return False
        self.process(job)
        return True

    def process(self, job: ClaimedJob) -> None:
        """Run a claimed job to one outcome, persist it once and log it once (never raises for
        a failure of the job: that is a ``failed`` outcome)."""
        log.info("job_claimed", worker=self.name, **job.log_context())
        started = time.perf_counter()
        with self._heartbeat(job) as saving:
            outcome = self._outcome(job)
            saving.set()  # from here the save itself finds and reports a lost lease
            outcome = self._persist(job, outcome, started)
        _log_outcome(job, outcome)

    def _outcome(self, job: ClaimedJob) -> Outcome:
        """Read the series once and run the job on it; nothing is saved here."""
        try:
            datasets = self._read(job)
            if job.kind is JobKind.ABSTAIN:
                outcome = _abstention(datasets, self._job_reasons(job), PROTOCOL_REFUSAL)
            else:
                outcome = self._analyse(datasets)
            for ds in outcome.outputs:
                outbox.check_identity(ds, datasets[0])
            return outcome
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
            return _failure(exc)

    def _read(self, job: ClaimedJob) -> list[Dataset]:
        """The series' datasets, read once (headers only for an abstention)."""
        from pipeline.volume import read_series

        with self.sessions() as session:
            paths = outbox.source_paths(session, self.cfg, job.series_id)
        return read_series(paths, pixels=job.kind is JobKind.ANALYSE)

    def _analyse(self, datasets: Sequence[Dataset]) -> Outcome:
        try:
            result, outputs = self.stage(datasets)
        except pipeline.InputRejected as exc:
            return _abstention(datasets, [Reason(exc.reason)], exc.detail)
        return Outcome(state=JobState.DONE, outputs=tuple(outputs), result=result)

    def _job_reasons(self, job: ClaimedJob) -> list[Reason]:
        """The protocol rule's reasons, as the assembler stored them on the job."""
        with self.sessions() as session:
            row = session.get(Job, job.id)
            return list((row.reasons if row is not None else None) or [Reason.OTHER])

    def _persist(self, job: ClaimedJob, outcome: Outcome, started: float) -> Outcome:
        """Save the outcome: the objects written, then the job ended with their outbox rows in
        one transaction. Returns what was saved: a failure to save a result is saved as a
        failed attempt; ``lease_lost`` is set when the job was no longer ours."""
        if outcome.state is not JobState.FAILED:
            try:
                return self._save_result(job, outcome, started)
            except JobLeaseLost as exc:
                return replace(outcome, lease_lost=str(exc))
            except Exception as exc:  # noqa: BLE001 - writing the results failed: retried like any failure
                outcome = _failure(exc)
        try:
            return replace(outcome, state=queue.fail(self.sessions, job, outcome.detail, self.policy))
        except JobLeaseLost as exc:
            return replace(outcome, lease_lost=str(exc))

    def _save_result(self, job: ClaimedJob, outcome: Outcome, started: float) -> Outcome:
        written = outbox.write_outputs(self.cfg, outcome.outputs)

        def add_outbox_rows(session: Session) -> object:
            return outbox.enqueue(session, self.cfg, job.id, written)

        if outcome.state is JobState.ABSTAINED:
            queue.abstain(self.sessions, job, outcome.reasons, outcome.detail, add_outbox_rows)
            self.on_results()
            return outcome
        listed = [{"sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID), "path": rel}
                  for ds, rel in written]
        result = (outcome.result or {}) | {"outputs": listed, "seconds": round(time.perf_counter() - started, 3)}
        queue.complete(self.sessions, job, result, add_outbox_rows)
        self.on_results()
        return replace(outcome, result=result)

    @contextmanager
    def _heartbeat(self, job: ClaimedJob) -> Iterator[threading.Event]:
        """Extend the job's lease every ``heartbeat_s`` while the block runs. The block sets the
        event it is given when it starts saving the job's end: a heartbeat that then finds the
        lease gone (the save has just ended the job, or the save will find it) logs nothing, so a
        lost lease is logged once."""
        stop, saving = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop, saving), daemon=True)
        beat.start()
        try:
            yield saving
        finally:
            stop.set()
            beat.join()

    def _beat(self, job: ClaimedJob, stop: threading.Event, saving: threading.Event) -> None:
        while not stop.wait(self.cfg.worker.heartbeat_s):
            self.last_seen = time.monotonic()
            try:
                queue.heartbeat(self.sessions, job, self.cfg.worker.lease_s)
            except JobLeaseLost:
                if not saving.is_set():
                    log.error("job_lease_lost", job_id=job.id)
                return
            except Exception as exc:  # noqa: BLE001 - keep trying until the job ends
                log.warning("heartbeat_failed", job_id=job.id, error=repr(exc))


def _log_outcome(job: ClaimedJob, outcome: Outcome) -> None:
    """The one log event of a job's attempt, named by its outcome."""
    ctx = job.log_context()
    failed = outcome.state in (JobState.FAILED, JobState.DEAD)
    if outcome.lease_lost is not None:
        lost = {"error": outcome.detail} if failed else {"detail": outcome.lease_lost}
        log.error("job_lease_lost", **lost, **ctx)
    elif failed:
        log.error("job_failed", error=outcome.detail, new_state=str(outcome.state), **ctx)
    elif outcome.state is JobState.ABSTAINED and job.kind is JobKind.ABSTAIN:
        log.info("job_abstention_sent", reasons=[str(r) for r in outcome.reasons], **ctx)
    elif outcome.state is JobState.ABSTAINED:
        log.warning("job_abstained", reason=str(outcome.reasons[0]), detail=outcome.detail, **ctx)
    else:
        result = outcome.result or {}
        metrics.observe_stages(result.get("timings_s", {}))
        log.info("job_done", seconds=result.get("seconds"), outputs=len(outcome.outputs), **ctx,
                 **{k: v for k, v in result.items() if k in ("shape", "phases", "lesion_source")},
                 lesions=len(result.get("lesions", [])))
