"""Helpers for acceptance tests against a real Orthanc (Debian's package via run-orthanc.sh)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
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
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}")
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

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
