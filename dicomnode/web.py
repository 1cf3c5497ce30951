"""The node's HTTP side: the status page ``/``, ``/healthz`` and ``/metrics``, a Starlette app
served by uvicorn in `serve`.

``/`` is the status page (``dicomnode.dashboard``), with the key image of a finished job at
``/jobs/<id>/key.png``.

``/healthz`` answers 200 only when the parts that do the work work, each checked for real:

* ``database``: a query on the jobs table answers, and a write that changes nothing gets its lock
  within 5 s (then rolled back);
* ``scp``: the SCP accepts an association (a C-ECHO to itself; with TLS, a TCP connection);
* ``assembler``: it ran within three check intervals;
* ``workers``: every worker of this process polled or sent a heartbeat recently (none in this
  process: not checked here);
* ``disk``: free space under data_dir is above ``node.min_free_disk_mb``.

Otherwise 503, and the body names what failed and why. ``/metrics`` is Prometheus' text format
(``dicomnode.metrics``). Loopback only by default; on any other address HTTP basic authentication
with ``http.username`` and ``http.password`` is required (the configuration refuses to start
without them). No endpoint shows patient identifiers.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import uvicorn
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dicomnode import dashboard
from dicomnode.config import Config
from dicomnode.db import Job, probe_write
from dicomnode.errors import NodeError
from dicomnode.handlers import HEALTH_CHECK_AE
from dicomnode.logs import get_logger
from dicomnode.metrics import DatabaseCollector

log = get_logger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Liveness:
    """What the running node reports about its own threads (monotonic seconds)."""

    assembler_last_run: Callable[[], float | None]
    workers_last_seen: Callable[[], Sequence[float]]


WRITE_PROBE_TIMEOUT_S = 5.0


def _first_line(exc: Exception) -> str:
    """The driver's own message (``database is locked``), without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", exc)
    return str(original).splitlines()[0][:200] if str(original) else ""


class HealthChecks:
    def __init__(self, cfg: Config, sessions: sessionmaker, scp_port: int, liveness: Liveness) -> None:
        self.cfg, self.sessions, self.scp_port, self.liveness = cfg, sessions, scp_port, liveness

    def run(self) -> list[Check]:
        return [self._database(), self._scp(), self._assembler(), self._workers(), self._disk()]

    def _database(self) -> Check:
        """A read, then a write that changes nothing (rolled back): a database that answers reads
        but takes no write (a stuck writer holds its lock, it went read-only) is not healthy."""
        with self.sessions() as session:
            try:
                jobs = session.scalar(select(func.count()).select_from(Job))
            except Exception as exc:  # noqa: BLE001 - any failure is the answer
                return Check("database", False, f"query failed: {type(exc).__name__}")
            try:
                probe_write(session, timeout_s=WRITE_PROBE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001
                return Check("database", False, f"write failed: {type(exc).__name__}: {_first_line(exc)}")
            finally:
                session.rollback()
        return Check("database", True, f"{jobs} jobs, writable")

    def _scp(self) -> Check:
        host = self.cfg.node.host if self.cfg.node.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if self.cfg.node.tls_certificate:
            try:
                socket.create_connection((host, self.scp_port), timeout=5).close()
            except OSError as exc:
                return Check("scp", False, f"no TCP connection on port {self.scp_port}: {exc.strerror}")
            return Check("scp", True, f"port {self.scp_port} accepts connections (TLS)")
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=HEALTH_CHECK_AE)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 5
        assoc = ae.associate(host, self.scp_port, ae_title=self.cfg.node.ae_title)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            ok = bool(status) and status.Status == 0
            return Check("scp", ok, "C-ECHO answered" if ok else "C-ECHO not answered")
        if assoc.is_rejected:  # the calling AE is not on the whitelist: the SCP still answers
            return Check("scp", True, "association answered (rejected: calling AE not allowed)")
        return Check("scp", False, f"no association on port {self.scp_port}")

    def _assembler(self) -> Check:
        last = self.liveness.assembler_last_run()
        limit = 3 * self.cfg.protocol.check_interval_s + 5
        if last is None:
            return Check("assembler", False, "has not run yet")
        age = time.monotonic() - last
        return Check("assembler", age <= limit, f"last run {age:.1f} s ago (limit {limit:g} s)")

    def _workers(self) -> Check:
        seen = self.liveness.workers_last_seen()
        if not seen:
            return Check("workers", True, "no worker in this process")
        limit = 3 * self.cfg.worker.heartbeat_s + 10 * self.cfg.worker.poll_interval_s
        ages = [time.monotonic() - t for t in seen]
        fresh = sum(age <= limit for age in ages)
        return Check("workers", fresh > 0, f"{fresh} of {len(ages)} seen within {limit:g} s")

    def _disk(self) -> Check:
        free_mb = shutil.disk_usage(self.cfg.data_dir).free // (1024 * 1024)
        ok = free_mb >= self.cfg.node.min_free_disk_mb
        return Check("disk", ok, f"{free_mb} MB free (minimum {self.cfg.node.min_free_disk_mb} MB)")


def make_app(cfg: Config, sessions: sessionmaker, checks: HealthChecks) -> Starlette:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(sessions))

    # plain functions: Starlette runs them in its thread pool, so the checks (a C-ECHO, queries)
    # never block the event loop
    def healthz(request: Request) -> Response:
        results = checks.run()
        failed = [c.name for c in results if not c.ok]
        body = {"status": "fail" if failed else "ok", "failed": failed, "checks": [asdict(c) for c in results]}
        if failed:
            log.warning("health_failed", failed=failed)
        return JSONResponse(body, status_code=503 if failed else 200)

    def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY) + generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def page(request: Request) -> Response:
        return HTMLResponse(dashboard.render(cfg, sessions, checks.scp_port))

    def key_image(request: Request) -> Response:
        png = dashboard.key_image_png(cfg, sessions, int(request.path_params["job_id"]))
        if png is None:
            return Response("this job made no key image", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    routes = [Route("/", _guarded(cfg, page)), Route("/jobs/{job_id:int}/key.png", _guarded(cfg, key_image)),
              Route("/healthz", _guarded(cfg, healthz)), Route("/metrics", _guarded(cfg, metrics))]
    return Starlette(routes=routes)


def _guarded(cfg: Config, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """HTTP basic authentication when http.username is set."""
    if not cfg.http.username:
        return endpoint
    expected = base64.b64encode(f"{cfg.http.username}:{cfg.http.password}".encode()).decode()

    def guarded(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        if not (given.startswith("Basic ") and secrets.compare_digest(given[6:], expected)):
            return Response("authentication required", status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="spinenode"'})
        return endpoint(request)

    return guarded


class HttpServer:
    """uvicorn in a thread of `serve`; ``port`` is the port bound (useful with port 0)."""

    def __init__(self, cfg: Config, app: Starlette) -> None:
        config = uvicorn.Config(app, host=cfg.http.host, port=cfg.http.port, log_config=None, access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.port = 0

    def start(self, timeout: float = 30) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise NodeError(f"the HTTP side could not listen on {self._server.config.host}:"
                                f"{self._server.config.port}: another program may hold the port; change http.port")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("http_listening", host=self._server.config.host, port=self.port)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
