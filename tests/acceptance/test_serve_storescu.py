"""`spinenode serve` as a subprocess, dcmtk `storescu` sending a folder, `spinenode status --json`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool, wait_for, write_config

pytestmark = pytest.mark.acceptance
SPINENODE = [sys.executable, "-m", "dicomnode"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int, subprocess.Popen]]:
    config = write_config(tmp_path)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*SPINENODE, "serve", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    port_file = tmp_path / "var" / "run" / "scp.port"
    try:
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=60)
        yield config, int(port_file.read_text()), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def status(config: Path) -> dict:
    out = subprocess.run([*SPINENODE, "status", "--config", str(config), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_storescu_folder_gives_one_job_that_reaches_done(served, phantom_dir: Path) -> None:  # noqa: ANN001
    config, port, proc = served
    storescu = require_tool("storescu")
    folder = phantom_dir / "study_101" / "series"
    run = subprocess.run([storescu, "-aet", "STORESCU", "-aec", "SPINENODE", "+sd", "127.0.0.1",
                          str(port), str(folder)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    report = wait_for(lambda: (r := status(config))["jobs"]["done"] == 1 and r, timeout=60)
    assert report["instances"]["total"] == 12
    assert report["series"]["complete"] == 1
    assert sum(report["jobs"].values()) == 1
    # a clean stop on SIGTERM
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_a_busy_port_is_a_clear_error(served, tmp_path: Path) -> None:  # noqa: ANN001
    _, port, _ = served
    other = tmp_path / "other"
    other.mkdir()
    config = write_config(other, node={"port": port})
    run = subprocess.run([*SPINENODE, "serve", "--config", str(config)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "node.port" in run.stderr


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[node]\nport = 99999\n")
    run = subprocess.run([*SPINENODE, "serve", "--config", str(bad)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 2
    assert "node.port = 99999" in run.stderr and "0..65535" in run.stderr


def test_demo_runs_the_whole_path_and_writes_a_key_image_and_report(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "demo"
    run = subprocess.run([*SPINENODE, "demo", "--config", str(config), "--out", str(out), "--seed", "3"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "starting one for the demo" in run.stdout and "job 1 done" in run.stdout
    report = (out / "report.md").read_text()
    assert "NOT FOR DIAGNOSIS" in report and "lesion 1:" in report and "mL" in report
    coded = [line for line in report.splitlines() if line.startswith("Finding coded in the report: ")]
    assert len(coded) == 1 and coded[0].split(": ", 1)[1].split(" (")[0] in ("metastasis", "primary", "indeterminate")
    from PIL import Image

    with Image.open(out / "key_image.png") as img:
        assert img.mode == "RGB" and min(img.size) >= 512
