"""The worker loop: claim a job, run the pipeline on its series, write the results and queue them.

* ``analyse`` job: load, segment, measure (``pipeline.analyse``), build SEG + SR + key image,
  check they carry the input's patient and study, write them, and end the job ``done`` with
  one outbox row per destination in the same transaction.
* ``abstain`` job (the assembler refused the series), or an ``analyse`` job the pipeline
  refuses (no lesion, input out of range, undecodable pixels): build the abstention SR with the
  coded reasons, write it, queue it, end the job ``abstained``.
* Any other failure: retried with backoff, then ``dead``.

A heartbeat thread extends the job's lease while it runs; if the worker dies, the lease expires
and the job returns to the queue (``queue.requeue_expired``, run by every worker).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

import pipeline
from dicomnode import outbox, queue
from dicomnode.config import Config
from dicomnode.db import JobKind
from dicomnode.errors import JobLeaseLost
from dicomnode.jobs import ClaimedJob
from dicomnode.logs import get_logger
from dicomnode.retry import RetryPolicy

log = get_logger(__name__)

StageResult = tuple[dict[str, Any], list[Dataset]]
Stage = Callable[[list[Path]], StageResult]


def analysis_stage(cfg: Config) -> Stage:
    """Segment and measure the series, and build the result objects."""

    def stage(paths: list[Path]) -> StageResult:
        from pipeline.outputs.build import build_results, source_headers

        analysis = pipeline.analyse(paths, use_unet=cfg.worker.use_unet, precision=cfg.worker.unet_precision,
                                    use_radiomics=cfg.worker.use_radiomics,
                                    use_classifier=cfg.worker.use_classifier)
        t = time.perf_counter()
        outputs = build_results(analysis, source_headers(paths, analysis))
        summary = {"stage": "analyse"} | analysis.summary()
        summary["timings_s"]["build_outputs"] = round(time.perf_counter() - t, 3)
        return summary, outputs

    return stage


def abstention_outputs(paths: Sequence[Path], reasons: Sequence[str]) -> list[Dataset]:
    from pipeline.outputs.build import build_abstention

    headers = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in paths),
                     key=lambda ds: int(ds.get("InstanceNumber", 0) or 0))
    return [build_abstention(headers, reasons, str(headers[0].SeriesInstanceUID))]


def worker_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


class Worker:
    def __init__(self, cfg: Config, sessions: sessionmaker, *, name: str | None = None,
                 stage: Stage | None = None) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.name = name or worker_name()
        self.stage = stage or analysis_stage(cfg)
        self.policy = RetryPolicy(max_attempts=cfg.worker.max_attempts,
                                  base_s=cfg.worker.retry_base_s, max_s=cfg.worker.retry_max_s)
        if cfg.worker.torch_threads:
            import torch

            torch.set_num_threads(cfg.worker.torch_threads)

    def run(self, stop: threading.Event) -> None:
        log.info("worker_started", worker=self.name)
        while not stop.is_set():
            try:
                queue.requeue_expired(self.sessions, self.policy)
                job = queue.claim(self.sessions, self.name, self.cfg.worker.lease_s)
            except Exception as exc:  # noqa: BLE001 - database briefly unavailable: wait, retry
                log.error("worker_poll_failed", worker=self.name, error=repr(exc))
                stop.wait(self.cfg.worker.poll_interval_s * 5)
                continue
            if job is None:
                stop.wait(self.cfg.worker.poll_interval_s)
                continue
            self.process(job)
        log.info("worker_stopped", worker=self.name)

    def run_once(self) -> bool:
        """Process one job if there is one (for tests and scripts); True if one ran."""
        queue.requeue_expired(self.sessions, self.policy)
        job = queue.claim(self.sessions, self.name, self.cfg.worker.lease_s)
        if job is None:
            return False
        self.process(job)
        return True

    def _paths(self, job: ClaimedJob) -> list[Path]:
        with self.sessions() as session:
            return outbox.source_paths(session, self.cfg, job.series_id)

    def _queue_outputs(self, outputs: Sequence[Dataset], paths: Sequence[Path], job: ClaimedJob,
                       result: dict[str, Any] | None = None) -> Callable[[Session], object]:
        """Check and write the outputs now (listed in ``result``); the returned callable adds
        their outbox rows."""
        source = pydicom.dcmread(paths[0], stop_before_pixels=True)
        for ds in outputs:
            outbox.check_identity(ds, source)
        written = outbox.write_outputs(self.cfg, outputs)
        if result is not None:
            result["outputs"] = [{"sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID),
                                  "path": rel} for ds, rel in written]
        return lambda session: outbox.enqueue(session, self.cfg, job.id, written)

    def process(self, job: ClaimedJob) -> None:
        ctx = job.log_context()
        log.info("job_claimed", worker=self.name, **ctx)
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop_beat), daemon=True)
        beat.start()
        started = time.perf_counter()
        try:
            paths = self._paths(job)
            if job.kind is JobKind.ABSTAIN:
                reasons = self._job_reasons(job)
                also = self._queue_outputs(abstention_outputs(paths, reasons), paths, job)
                queue.abstain(self.sessions, job, ",".join(reasons), "refused by the protocol rule", also)
                log.info("job_abstention_sent", reasons=reasons, **ctx)
                return
            try:
                result, outputs = self.stage(paths)
            except pipeline.InputRejected as exc:
                also = self._queue_outputs(abstention_outputs(paths, [exc.reason]), paths, job)
                queue.abstain(self.sessions, job, exc.reason, exc.detail, also)
                log.warning("job_abstained", reason=exc.reason, detail=exc.detail, **ctx)
                return
            also = self._queue_outputs(outputs, paths, job, result)
            result["seconds"] = round(time.perf_counter() - started, 3)
            queue.complete(self.sessions, job, result, also)
            log.info("job_done", seconds=result["seconds"], outputs=len(outputs), **ctx,
                     **{k: v for k, v in result.items() if k in ("shape", "phases", "lesion_source")},
                     lesions=len(result.get("lesions", [])))
        except JobLeaseLost as exc:
            log.error("job_lease_lost", detail=str(exc), **ctx)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
            error = f"{type(exc).__name__}: {exc}"
            try:
                state = queue.fail(self.sessions, job, error, self.policy)
                log.error("job_failed", error=error, new_state=str(state), **ctx)
            except JobLeaseLost:
                log.error("job_lease_lost", error=error, **ctx)
        finally:
            stop_beat.set()
            beat.join()

    def _job_reasons(self, job: ClaimedJob) -> list[str]:
        from dicomnode.db import Job

        with self.sessions() as session:
            row = session.get(Job, job.id)
            return [r for r in ((row.reason if row else "") or "other").split(",") if r]

    def _heartbeat(self, job: ClaimedJob, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.worker.heartbeat_s):
            try:
                queue.heartbeat(self.sessions, job, self.cfg.worker.lease_s)
            except JobLeaseLost:
                log.error("job_lease_lost", job_id=job.id)
                return
            except Exception as exc:  # noqa: BLE001 - keep trying until the job ends
                log.warning("heartbeat_failed", job_id=job.id, error=repr(exc))
