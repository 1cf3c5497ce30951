"""Debian's Orthanc as a PACS on this machine, for `spinenode demo --viewer`.

It runs as the acceptance tests run it: ``orthanc-test/run-orthanc.sh`` (the configuration of
``orthanc-test/orthanc.json``, a temporary storage folder removed on exit) on ports the OS says are
free, its Lua script routing each stable VIBE-family MR series to the node, its DICOMweb plugin
(Debian's orthanc-dicomweb) serving the viewer. Its AE title, user and password are read from that
configuration, not written here. It runs in its own process group, stopped with SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dicomnode.errors import NodeError
from dicomnode.logs import get_logger

log = get_logger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = SOURCE_ROOT / "orthanc-test" / "run-orthanc.sh"
CONFIGURATION = SOURCE_ROOT / "orthanc-test" / "orthanc.json"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # where run-orthanc.sh looks


def free_port() -> int:
    """A TCP port on the loopback interface that the OS says is free now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_installed() -> None:
    """NodeError naming what is missing: the script, Orthanc itself, or its DICOMweb plugin."""
    if not SCRIPT.is_file():
        raise NodeError(f"{SCRIPT} is missing: the viewer demo runs from a source checkout of spinenode")
    if shutil.which("Orthanc") is None:
        raise NodeError("Orthanc is not installed: run scripts/install.sh --viewer (Debian's orthanc package)")
    if not DICOMWEB_PLUGIN.is_file():
        raise NodeError(f"Orthanc's DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}): run scripts/install.sh "
                        "--viewer (Debian's orthanc-dicomweb package)")


@dataclass
class LocalOrthanc:
    """A running Orthanc: its DICOM and HTTP ports on 127.0.0.1, AE title and HTTP user."""

    ae_title: str
    dicom_port: int
    http_port: int
    username: str
    password: str = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    log_file: IO[bytes] = field(repr=False)

    log_path: Path

    def get(self, path: str, timeout: float = 10, data: bytes | None = None) -> bytes:
        """GET ``path`` from its REST API (with its user and password), or POST ``data`` to it."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())

    def json(self, path: str) -> Any:  # noqa: ANN401 - whatever JSON the REST API answers
        return json.loads(self.get(path))

    def post(self, path: str, body: str) -> Any:  # noqa: ANN401
        return json.loads(self.get(path, data=body.encode()))

    def series(self) -> list[dict[str, Any]]:
        """Every series it holds, expanded (tags, instances, parent study)."""
        return list(self.json("/series?expand"))

    def alive(self) -> bool:
        try:
            self.get("/system", timeout=2)
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to its process group (the script removes its storage), SIGKILL after 30 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            log.info("orthanc_stopped", pid=self.process.pid)
        self.log_file.close()


def _identity() -> tuple[str, str, str]:
    """(AE title, user, password) from the configuration run-orthanc.sh starts Orthanc with."""
    config = json.loads(CONFIGURATION.read_text())
    username, password = next(iter(config["RegisteredUsers"].items()))
    return str(config["DicomAet"]), str(username), str(password)


def start_orthanc(log_path: Path, *, node_ae: str, node_port: int, stable_age: int = 2,
                  timeout: float = 60, storage: Path | None = None, dicom_port: int | None = None) -> LocalOrthanc:
    """Starts Orthanc (its output to ``log_path``), routing to the node at ``node_ae``@127.0.0.1:``node_port``
    ``stable_age`` seconds after a series' last instance; returns once its REST API answers. Its
    database lives in ``storage`` (kept), else in a temporary folder removed when it stops. Orthanc
    cannot bind port 0 and say which port it got, so ports the OS said were free are tried: when
    Orthanc exits at once (another process took one meanwhile), it is started again on new ones."""
    check_installed()
    for attempt in (1, 2):
        try:
            return _start(log_path, node_ae, node_port, stable_age, timeout, storage, dicom_port)
        except _ExitedAtOnce:
            log.warning("orthanc_restarting", attempt=attempt, reason="exited at start (a port taken meanwhile?)")
    return _start(log_path, node_ae, node_port, stable_age, timeout, storage, dicom_port)  # its error is final


class _ExitedAtOnce(NodeError):
    """Orthanc's process ended before its REST API answered."""


def _start(log_path: Path, node_ae: str, node_port: int, stable_age: int, timeout: float,
           storage: Path | None, dicom_port: int | None) -> LocalOrthanc:
    ae_title, username, password = _identity()
    dicom_port, http_port = dicom_port or free_port(), free_port()
    env = os.environ | {"ORTHANC_DICOM_PORT": str(dicom_port), "ORTHANC_HTTP_PORT": str(http_port),
                        "ORTHANC_STABLE_AGE": str(stable_age), "SPINENODE_AE": node_ae,
                        "SPINENODE_HOST": "127.0.0.1", "SPINENODE_PORT": str(node_port)}
    env.pop("ORTHANC_STORAGE", None)  # a temporary folder, removed when it stops
    if storage is not None:
        env["ORTHANC_STORAGE"] = str(storage)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    process = subprocess.Popen([str(SCRIPT)], env=env, stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True)
    orthanc = LocalOrthanc(ae_title, dicom_port, http_port, username, password, process, log_file, log_path)
    deadline = time.monotonic() + timeout
    while not orthanc.alive():
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            orthanc.stop()
            tail = log_path.read_text(errors="replace")[-1500:]
            failure = _ExitedAtOnce if exited else NodeError
            raise failure(f"Orthanc did not start within {timeout:.0f} s; its log ({log_path}) ends:\n{tail}")
        time.sleep(0.2)
    if "dicom-web" not in orthanc.json("/plugins"):
        orthanc.stop()
        raise NodeError("Orthanc started without its DICOMweb plugin: run scripts/install.sh --viewer")
    log.info("orthanc_started", pid=process.pid, dicom_port=dicom_port, http_port=http_port)
    return orthanc
