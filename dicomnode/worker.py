"""The worker loop: claim a job, run the pipeline stage on its series, record the outcome.

A heartbeat thread extends the job's lease while the stage runs; if the worker dies, the lease
expires and the job returns to the queue (``queue.requeue_expired``, run by every worker).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

import pipeline
from dicomnode import queue
from dicomnode.config import Config
from dicomnode.db import Instance
from dicomnode.errors import JobLeaseLost
from dicomnode.jobs import ClaimedJob
from dicomnode.logs import get_logger
from dicomnode.retry import RetryPolicy

log = get_logger(__name__)

Stage = Callable[[list[Path]], dict[str, Any]]


def analysis_stage(cfg: Config) -> Stage:
    """Load the series, segment it (region growing and U-Net), measure the lesions."""

    def stage(paths: list[Path]) -> dict[str, Any]:
        analysis = pipeline.analyse(paths, use_unet=cfg.worker.use_unet, precision=cfg.worker.unet_precision)
        return {"stage": "analyse"} | analysis.summary()

    return stage


def worker_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


class Worker:
    def __init__(self, cfg: Config, sessions: sessionmaker, *, name: str | None = None,
                 stage: Stage | None = None) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.name = name or worker_name()
        self.stage = stage or analysis_stage(cfg)
        if cfg.worker.torch_threads:
            import torch

            torch.set_num_threads(cfg.worker.torch_threads)
        self.policy = RetryPolicy(max_attempts=cfg.worker.max_attempts,
                                  base_s=cfg.worker.retry_base_s, max_s=cfg.worker.retry_max_s)

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
            rel = session.scalars(
                select(Instance.path).where(Instance.series_id == job.series_id, Instance.late.is_(False))
            ).all()
        return [self.cfg.data_dir / p for p in rel]

    def process(self, job: ClaimedJob) -> None:
        ctx = job.log_context()
        log.info("job_claimed", worker=self.name, **ctx)
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop_beat), daemon=True)
        beat.start()
        started = time.perf_counter()
        try:
            result = self.stage(self._paths(job))
            result["seconds"] = round(time.perf_counter() - started, 3)
            queue.complete(self.sessions, job, result)
            log.info("job_done", seconds=result["seconds"], **ctx,
                     **{k: v for k, v in result.items() if k in ("shape", "phases", "lesion_source")},
                     lesions=len(result.get("lesions", [])))
        except pipeline.InputRejected as exc:
            queue.abstain(self.sessions, job, exc.reason, exc.detail)
            log.warning("job_abstained", reason=exc.reason, detail=exc.detail, **ctx)
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

    def _heartbeat(self, job: ClaimedJob, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.worker.heartbeat_s):
            try:
                queue.heartbeat(self.sessions, job, self.cfg.worker.lease_s)
            except JobLeaseLost:
                log.error("job_lease_lost", job_id=job.id)
                return
            except Exception as exc:  # noqa: BLE001 - keep trying until the job ends
                log.warning("heartbeat_failed", job_id=job.id, error=repr(exc))
