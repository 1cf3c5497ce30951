"""`spinenode serve` and `spinenode worker`: wiring of SCP, assembler and workers in one process.

Shutdown (SIGTERM or SIGINT) stops accepting associations first; an instance is acknowledged
only after its file is renamed into place and its row committed, so nothing acknowledged is lost
whatever moment the process stops. A job running at shutdown is finished if it ends within
the grace period; otherwise its lease expires and the next start runs it again.

The sender delivers the outbox to every configured destination (a thread when any is
configured).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from dicomnode import logs
from dicomnode.assembler import WAKE_DELAY_S, Assembler
from dicomnode.config import Config
from dicomnode.db import init_db, make_engine, make_sessionmaker
from dicomnode.handlers import StoreContext
from dicomnode.liveness import worker_name
from dicomnode.recorder import Recorder
from dicomnode.scp import start_scp
from dicomnode.sender import Sender
from dicomnode.storage import clear_incoming
from dicomnode.wakeup import Wakeup
from dicomnode.web import HealthChecks, HttpServer, Liveness, make_app
from dicomnode.worker import Worker

log = logs.get_logger(__name__)
SHUTDOWN_GRACE_S = 30.0


def setup(cfg: Config) -> tuple[Engine, sessionmaker]:
    """Logging, data folder and database, as every subcommand that runs the node needs.

    Received instances, outputs, logs and the database hold patient data: the process umask is
    set so that everything the node creates is readable by the service user only."""
    os.umask(0o077)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    cfg.data_dir.chmod(0o700)
    logs.configure(cfg.logging.level, cfg.data_dir / cfg.logging.json_file, cfg.logging.console)
    engine = make_engine(cfg.database.url, fsync=cfg.node.fsync)
    migration = init_db(engine)
    if migration.changed:
        log.info(migration.log_event(), from_revision=migration.before, to_revision=migration.after)
    return engine, make_sessionmaker(engine)


@dataclass
class Node:
    """A running node; ``port`` is the port the SCP actually bound (useful with port 0)."""

    cfg: Config
    engine: Engine
    sessions: sessionmaker
    stop_event: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    http_port: int = 0  # 0: the HTTP side is off
    _server: ThreadedAssociationServer | None = None
    _recorder: Recorder | None = None
    _http: HttpServer | None = None
    _scheduler: BackgroundScheduler | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _jobs_queued: Wakeup = field(default_factory=Wakeup)  # assembler -> workers
    _results_ready: Wakeup = field(default_factory=Wakeup)  # workers -> sender

    def start(self) -> Node:
        assembler = Assembler(self.sessions, self.cfg.protocol, self.cfg.worker)
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_job(assembler.run, "interval", kwargs={"full": True},
                                seconds=self.cfg.protocol.check_interval_s, id="assembler", max_instances=2,
                                coalesce=True)
        assembler.wake = lambda: self._scheduler.add_job(  # type: ignore[union-attr]
            assembler.run, "date", run_date=_now() + dt.timedelta(seconds=WAKE_DELAY_S), id="assembler-wake",
            replace_existing=True)
        self._scheduler.start()
        if removed := clear_incoming(self.cfg.data_dir):
            log.info("incoming_cleared", files=removed, note="half-received before a restart; never acknowledged")
        self._recorder = Recorder(self.engine, self.cfg.node.data_dir, fsync=self.cfg.node.fsync).start()
        ctx = StoreContext(node=self.cfg.node, recorder=self._recorder, on_stored=assembler.notify)
        self._server = start_scp(self.cfg.node, ctx)
        self.port = self._server.server_address[1]
        _write_port_file(self.cfg.data_dir, self.port)
        assembler.on_queued = self._jobs_queued.ring
        workers = [Worker(self.cfg, self.sessions, name=worker_name(i), wakeup=self._jobs_queued,
                          on_results=self._results_ready.ring) for i in range(self.cfg.worker.workers)]
        for i, worker in enumerate(workers):
            thread = threading.Thread(target=worker.run, args=(self.stop_event,), name=f"worker-{i}")
            thread.start()
            self._threads.append(thread)
        if self.cfg.destinations:
            sender = Sender(self.cfg, self.sessions, wakeup=self._results_ready)
            thread = threading.Thread(target=sender.run, args=(self.stop_event,), name="sender")
            thread.start()
            self._threads.append(thread)
        if self.cfg.http.enabled:
            self._start_http(Liveness(assembler_last_run=lambda: assembler.last_run,
                                      workers_last_seen=lambda: [w.last_seen for w in workers]))
        log.info("node_started", ae_title=self.cfg.node.ae_title, port=self.port, http_port=self.http_port,
                 workers=self.cfg.worker.workers, destinations=[d.name for d in self.cfg.destinations])
        return self

    def _start_http(self, liveness: Liveness) -> None:
        checks = HealthChecks(self.cfg, self.sessions, self.port, liveness)
        self._http = HttpServer(self.cfg, make_app(self.cfg, self.sessions, checks)).start()
        self.http_port = self._http.port
        _write_port_file(self.cfg.data_dir, self.http_port, "http.port")

    def stop(self) -> None:
        log.info("node_stopping")
        if self._http is not None:
            self._http.stop()
        if self._server is not None:
            self._server.shutdown()
        if self._recorder is not None:
            self._recorder.stop()  # after the SCP: every handler has its answer
        self.stop_event.set()
        self._jobs_queued.ring()  # the loops see the stop now, not at their next poll
        self._results_ready.ring()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join(SHUTDOWN_GRACE_S)
            if thread.is_alive():
                log.warning("worker_still_running", thread=thread.name,
                            note="its job's lease will expire and the job will run again")
        self.engine.dispose()
        (self.cfg.data_dir / "run" / "scp.port").unlink(missing_ok=True)
        (self.cfg.data_dir / "run" / "http.port").unlink(missing_ok=True)
        log.info("node_stopped")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_port_file(data_dir: Path, port: int, name: str = "scp.port") -> None:
    run = data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / name).write_text(f"{port}\n")


def _wait_for_signal(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1.0):
        pass


def serve(cfg: Config) -> int:
    engine, sessions = setup(cfg)
    node = Node(cfg, engine, sessions).start()
    stop = threading.Event()
    try:
        _wait_for_signal(stop)
    finally:
        node.stop()
    return 0


def run_worker(cfg: Config) -> int:
    """A worker alone (more workers on this or other machines, same database)."""
    engine, sessions = setup(cfg)
    stop = threading.Event()
    worker = Worker(cfg, sessions)
    thread = threading.Thread(target=worker.run, args=(stop,), name="worker")
    thread.start()
    try:
        _wait_for_signal(stop)
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    return 0
