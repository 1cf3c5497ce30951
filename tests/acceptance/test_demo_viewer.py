"""`spinenode demo --viewer` as a user runs it: Orthanc routes the phantom study to the node, the
results go back to Orthanc, the printed viewer URL serves OHIF and proxies QIDO-RS to Orthanc, and
Ctrl-C (SIGINT) stops the viewer and Orthanc and exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.acceptance.ohif import ohif_dist
from tests.conftest import require_tool, wait_for, write_config

pytestmark = pytest.mark.acceptance
URL = re.compile(r"OHIF Viewer: (http://127\.0\.0\.1:\d+)/viewer\?StudyInstanceUIDs=([0-9.]+)$")
ORTHANC_PORTS = re.compile(r"Orthanc \(the PACS\) on DICOM port (\d+), HTTP port (\d+)")
MODALITY, MODALITIES_IN_STUDY = "00080060", "00080061"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_demo_viewer_prints_a_viewer_url_that_serves_the_results_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ohif_dist()  # skips when the viewer is not unpacked
    require_tool("Orthanc")
    out = tmp_path / "demo"
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "dicomnode", "demo", "--viewer", "--config",
                             str(write_config(tmp_path)), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    lines: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found = wait_for(lambda: next((m for line in lines if (m := URL.search(line.strip()))), None)
                         or (demo.poll() is not None and "exited"), timeout=300, interval=0.5)
        assert isinstance(found, re.Match), "".join(lines)
        origin, study = found.group(1), found.group(2)
        print(f"\nviewer URL after {time.monotonic() - started:.1f} s")
        config = get(f"{origin}/app-config.js").decode()
        assert config.startswith("window.config = ") and f'"qidoRoot": "{origin}/dicom-web"' in config
        studies = json.loads(get(f"{origin}/dicom-web/studies?StudyInstanceUID={study}"))
        assert len(studies) == 1, studies
        series = json.loads(get(f"{origin}/dicom-web/studies/{study}/series"))
        assert sorted(s[MODALITY]["Value"][0] for s in series) == ["MR", "OT", "SEG", "SR"]
        if MODALITIES_IN_STUDY in studies[0]:
            assert {"SEG", "SR", "OT"} <= set(studies[0][MODALITIES_IN_STUDY]["Value"])
        (orthanc_http,) = [int(m.group(2)) for line in lines if (m := ORTHANC_PORTS.search(line))]
        assert not refused(orthanc_http)
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
        reader.join(10)
        demo.stdout.close()  # type: ignore[union-attr]
    text = "".join(lines)
    assert code == 0, text
    assert "job 1 done" in text and "measurement report (SR) -> ORTHANC" in text and "stopping" in text, text
    assert refused(orthanc_http), "Orthanc still answers after the demo stopped"
    print(f"demo --viewer, start to stopped: {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize(("what", "args", "path", "message"), [
    ("viewer", ["--ohif-dist", "none"], None, "is not unpacked at none: run scripts/install.sh --viewer"),
    ("orthanc", [], str(Path(sys.executable).parent), "Orthanc is not installed: run scripts/install.sh --viewer"),
])
def test_demo_viewer_says_what_is_missing(tmp_path: Path, what: str, args: list[str], path: str | None,
                                          message: str) -> None:
    if what == "orthanc":
        ohif_dist()
    env = os.environ | {"PATH": path} if path else dict(os.environ)
    config = write_config(tmp_path)
    run = subprocess.run([sys.executable, "-m", "dicomnode", "demo", "--viewer", "--config", str(config),
                          "--out", str(tmp_path / "demo"), *args], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=env, check=False)
    assert run.returncode == 2 and message in run.stderr, run.stdout + run.stderr
    assert not (tmp_path / "demo").exists()  # checked before the study is made
