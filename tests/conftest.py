"""Shared fixtures: phantom studies on disk, configurations on temporary folders, a running node."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dicomnode.config import Config, load_config
from dicomnode.node import Node, setup
from phantom import generate_study, write_study

REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, **sections: dict) -> Path:
    """A config.toml in ``folder`` (data and SQLite file inside it), port 0 unless given."""
    node = {"ae_title": "SPINENODE", "host": "127.0.0.1", "port": 0, "data_dir": "var",
            "min_free_disk_mb": 0, "fsync": True} | sections.pop("node", {})
    base = {
        "node": node,
        "database": {"url": "sqlite:///var/spinenode.db"},
        "protocol": {"quiet_period_s": 2.0, "check_interval_s": 0.5},
        "worker": {"poll_interval_s": 0.2, "heartbeat_s": 1.0, "lease_s": 10.0, "retry_base_s": 0.5},
        "logging": {"console": False},
        "http": {"port": 0},
    }
    for key, value in sections.items():
        base[key] = base.get(key, {}) | value
    lines = []
    for section, values in base.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            elif isinstance(v, list | tuple):
                lines.append(f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
            else:
                lines.append(f"{k} = {v}")
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small single-phase studies (256x256) written once per test session."""
    out = tmp_path_factory.mktemp("phantom")
    for seed in (101, 102, 103):
        write_study(generate_study(seed, matrix=(256, 256)), out)
    return out


@pytest.fixture(scope="session")
def jpegls_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom-jpegls")
    return write_study(generate_study(201, matrix=(256, 192)), out, transfer_syntax="jpegls")


@pytest.fixture
def series_files(phantom_dir: Path) -> Callable[[int], list[Path]]:
    def files(seed: int = 101) -> list[Path]:
        return sorted((phantom_dir / f"study_{seed}" / "series").glob("*.dcm"))
    return files


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start in-process nodes on OS-chosen ports; every one is stopped after the test."""
    started: list[Node] = []

    def start(**sections: dict) -> Node:
        folder = tmp_path / f"node{len(started)}"
        folder.mkdir()
        cfg = load_config(write_config(folder, **sections), environ={})
        engine, sessions = setup(cfg)
        node = Node(cfg, engine, sessions).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message on time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def write_sagittal_t2(files: list[Path], out: Path, suffix: str) -> list[Path]:
    """The phantom series rewritten as a sagittal 2D T2 TSE without contrast (a series the node
    must not analyse), under new UIDs ending in ``suffix``."""
    import pydicom

    written = []
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID += suffix
        ds.SOPInstanceUID += suffix
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription, ds.MRAcquisitionType, ds.ScanningSequence = "t2_tse_sag", "2D", "SE"
        ds.SequenceName = "*tse2d1_15"
        del ds.ContrastBolusAgent
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [k * 4.0, -120, 120]
        written.append(out / f"sag{k:02d}.dcm")
        ds.save_as(written[-1])
    return written


def require_tool(name: str) -> str:
    """A system tool (dcmtk, dicom3tools, Orthanc, chromium ...) from PATH, never the virtual
    environment's bin folder: pynetdicom 3 installs its own ``storescu`` there, with other options."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                             if p and Path(p).resolve() != venv_bin)
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install.sh --test (it installs the Debian packages)")
    return path


def config_of(node: Node) -> Config:
    return node.cfg


# phantom patient names, IDs and birth dates (all in 1919)
PHI_PATTERNS = (re.compile(r"PHANTOM\^"), re.compile(r"\bPH\d{8}\b"), re.compile(r"\b1919(0[1-9]|1[0-2])[0-3]\d\b"))


@pytest.fixture(scope="session", autouse=True)
def no_spinenode_variables() -> Iterator[None]:
    """A ``SPINENODE_*`` variable in the shell that runs the tests would reconfigure every node,
    worker and CLI the tests start as subprocesses (their environment is this one): the suite runs
    without them, and keeps the rest of the environment (mutation tools pass their state in it)."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("SPINENODE_")}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def no_patient_identifiers_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole suite: no log written by a node (JSON lines, serve and Orthanc logs) may
    contain a patient name, ID or birth date."""
    yield
    base = tmp_path_factory.getbasetemp()
    offending = []
    for path in [*base.rglob("*.jsonl"), *base.rglob("*.log"), *base.rglob("*.stderr")]:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if any(p.search(line) for p in PHI_PATTERNS):
                offending.append(f"{path.relative_to(base)}:{number}: {line[:160]}")
    assert not offending, "patient identifiers in logs:\n" + "\n".join(offending[:20])
