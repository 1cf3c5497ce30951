"""Helpers for acceptance tests against a real Orthanc (Debian's package via run-orthanc.sh)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

USER, PASSWORD = "spinenode", "spinenode-test"


def free_port() -> int:
    """A port the OS says is free now (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    dicom_port: int
    http_port: int
    proc: subprocess.Popen
    log: Path
    log_handle: object = None

    def get(self, path: str) -> object:
        return json.loads(self.get_bytes(path))

    def get_bytes(self, path: str, data: bytes | None = None) -> bytes:
        """GET ``path`` of the REST API, or POST ``data`` to it."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def post(self, path: str, body: str) -> object:
        return json.loads(self.get_bytes(path, body.encode()))

    def alive(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def series(self) -> list[dict]:
        return self.get("/series?expand")  # type: ignore[return-value]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log_handle is not None:
            self.log_handle.close()  # type: ignore[attr-defined]


def start_orthanc(tmp: Path, node_port: int, *, stable_age: int = 2) -> Orthanc:
    dicom_port, http_port = free_port(), free_port()
    log = tmp / "orthanc.log"
    env = os.environ | {"ORTHANC_DICOM_PORT": str(dicom_port), "ORTHANC_HTTP_PORT": str(http_port),
                        "ORTHANC_STABLE_AGE": str(stable_age), "SPINENODE_PORT": str(node_port),
                        "ORTHANC_STORAGE": str(tmp / "orthanc-db")}
    handle = log.open("w")
    proc = subprocess.Popen([str(REPO / "orthanc-test" / "run-orthanc.sh")], env=env, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)
    orthanc = Orthanc(dicom_port, http_port, proc, log, handle)
    deadline = time.monotonic() + 60
    while not orthanc.alive():
        if proc.poll() is not None or time.monotonic() > deadline:
            orthanc.stop()
            raise RuntimeError(f"Orthanc did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return orthanc


class TlsTerminator:
    """HTTPS in front of Orthanc's HTTP port, as the Orthanc Book recommends (a reverse proxy
    terminates TLS): Debian's Orthanc 1.10 resets every HTTPS connection after the handshake with
    OpenSSL 3, so its own SslEnabled cannot be used. Real TLS on both ends (Python's ssl, OpenSSL),
    bytes forwarded unchanged; a context manager, stopped on exit."""

    def __init__(self, target_port: int, certificate: Path, key: Path) -> None:
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TlsTerminator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that did not trust our certificate: its side reports why
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
