"""Orthanc as the PACS: auto-routing to `spinenode serve`, results back, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.acceptance.orthanc import Orthanc, free_port, start_orthanc
from tests.conftest import require_tool, wait_for, write_config, write_sagittal_t2

pytestmark = pytest.mark.acceptance
RESULT_MODALITIES = {"SEG", "SR", "OT"}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.orthanc_port = free_port()
        self.config = write_config(tmp)
        with self.config.open("a") as fh:
            fh.write(f'[[destinations]]\nname = "orthanc"\nae_title = "ORTHANC"\nhost = "127.0.0.1"\n'
                     f"port = {self.orthanc_port}\n")
        self.node_log = (tmp / "serve.log").open("w")
        self.node = subprocess.Popen([sys.executable, "-m", "dicomnode", "serve", "--config", str(self.config)],
                                     stdout=self.node_log, stderr=subprocess.STDOUT,
                                     env=os.environ | {"PYTHONUNBUFFERED": "1"})
        port_file = tmp / "var" / "run" / "scp.port"
        try:
            wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=60)
        except BaseException:  # the fixture's finally is not reached yet: stop the node here
            self.node.kill()
            self.node.wait(30)
            self.node_log.close()
            raise
        self.node_port = int(port_file.read_text())
        self.orthanc: Orthanc | None = None

    def start_orthanc(self) -> Orthanc:
        # the node was configured with this port; start Orthanc on it now that the node's is known
        self.orthanc = start_orthanc(self.tmp, self.node_port, dicom_port=self.orthanc_port)
        return self.orthanc

    def node_events(self) -> list[str]:
        """The events of the node's JSON log, in order."""
        path = self.tmp / "var" / "logs" / "spinenode.jsonl"
        return [json.loads(line)["event"] for line in path.read_text().splitlines()]

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "dicomnode", "status", "--config", str(self.config), "--json"],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.orthanc is not None:
            self.orthanc.stop()
        if self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)
            self.node.wait(30)
        self.node_log.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("orthanc-env"))
    try:
        e.start_orthanc()
        yield e
    finally:
        e.stop()


def storescu(folder: Path, port: int) -> None:
    run = subprocess.run([require_tool("storescu"), "-aec", "ORTHANC", "+sd", "127.0.0.1", str(port), str(folder)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr


def by_study(orthanc: Orthanc, study_uid: str) -> list[dict]:
    return [s for s in orthanc.series()
            if orthanc.json(f"/studies/{s['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"] == study_uid]


def test_routed_study_gets_seg_sr_and_key_image_under_the_same_patient(env: Env, phantom_dir: Path) -> None:
    folder = phantom_dir / "study_101" / "series"
    source = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    orthanc = env.orthanc
    assert orthanc is not None
    storescu(folder, orthanc.dicom_port)
    sent_at = time.monotonic()
    series = wait_for(lambda: (s := by_study(orthanc, source.StudyInstanceUID))
                      and {x["MainDicomTags"]["Modality"] for x in s} >= RESULT_MODALITIES and s, timeout=180)
    elapsed = time.monotonic() - sent_at
    print(f"\nlast instance into Orthanc -> SEG, SR and key image in Orthanc: {elapsed:.1f} s (StableAge 2 s)")
    modalities = sorted(x["MainDicomTags"]["Modality"] for x in series)
    assert modalities == ["MR", "OT", "SEG", "SR"]
    patients = {orthanc.json(f"/studies/{x['ParentStudy']}")["ParentPatient"] for x in series}
    assert len(patients) == 1 and len({x["ParentStudy"] for x in series}) == 1
    patient = orthanc.json(f"/patients/{patients.pop()}")
    assert patient["MainDicomTags"]["PatientID"] == source.PatientID
    classes = set()
    for x in series:
        instance = orthanc.json(f"/instances/{x['Instances'][0]}/tags?simplify")
        classes.add(instance["SOPClassUID"])
    assert {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34",
            "1.2.840.10008.5.1.4.1.1.7"} <= classes

    # the series routed again (Orthanc fires OnStableSeries once per series, so an administrator's
    # re-send through its REST API): the node acknowledges each copy as a duplicate, makes no new job
    # and sends nothing twice. First the positive evidence that every copy reached the node, then
    # the negatives.
    def duplicates() -> int:
        return env.node_events().count("instance_duplicate")

    (mr,) = [x for x in series if x["MainDicomTags"]["Modality"] == "MR"]
    orthanc.post("/modalities/spinenode/store", mr["ID"])
    wait_for(lambda: duplicates() == len(mr["Instances"]), timeout=60)
    again = by_study(orthanc, source.StudyInstanceUID)
    assert sorted(len(x["Instances"]) for x in again) == sorted(len(x["Instances"]) for x in series)
    assert len(again) == 4
    report = env.status()
    assert report["jobs"]["done"] == 1 and sum(report["jobs"].values()) == 1


def test_a_sagittal_t2_series_is_not_processed(env: Env, phantom_dir: Path, tmp_path: Path) -> None:
    orthanc = env.orthanc
    assert orthanc is not None
    write_sagittal_t2(sorted((phantom_dir / "study_102" / "series").glob("*.dcm")), tmp_path, ".7")
    before = env.status()
    storescu(tmp_path, orthanc.dicom_port)
    wait_for(lambda: "not VIBE-family, not forwarded" in orthanc.log_path.read_text(), timeout=60)
    after = env.status()
    assert after["instances"]["total"] == before["instances"]["total"]
    assert after["jobs"] == before["jobs"]
