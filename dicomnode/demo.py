"""`spinenode demo`: the whole path on this machine, from a synthetic study to results.

Uses the node that is running with the same configuration (found through
``data_dir/run/scp.port`` and a C-ECHO), or starts one in this process for the demo. Generates
a phantom study, sends it, shows progress while the job runs, then prints the findings and where
the results went, and writes the key image as a PNG and a short report.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pynetdicom import AE
from sqlalchemy import select

from dicomnode.config import Config
from dicomnode.db import Job, JobState, OutboxItem, Series
from dicomnode.node import Node, setup
from dicomnode.scu import send_files

FINAL = (JobState.DONE, JobState.ABSTAINED, JobState.DEAD)
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def _running_port(cfg: Config) -> int | None:
    port_file = cfg.data_dir / "run" / "scp.port"
    if not port_file.exists():
        return None
    port = int(port_file.read_text().strip())
    ae = AE(ae_title="SPINENODE_DEMO")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title=cfg.node.ae_title)
    if not assoc.is_established:
        return None
    assoc.release()
    return port


NAMES = {"1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
         "1.2.840.10008.5.1.4.1.1.88.34": "measurement report (SR)",
         SC_CLASS: "key image (Secondary Capture)",
         }


def run_demo(cfg: Config, out: Path, folder: Path, truth: str, timeout_s: float = 300) -> int:
    """Send the study written under ``folder`` (its series/ folder) through the node and report.

    The CLI makes the phantom study (``truth`` describes it): the node's own modules never import
    the phantom generator.
    """
    from dataclasses import replace

    # progress goes to the console; the node's own log lines go to its JSON log file only
    cfg = replace(cfg, logging=replace(cfg.logging, console=False), http=replace(cfg.http, enabled=False))
    engine, sessions = setup(cfg)
    port = _running_port(cfg)
    node = None
    if port is None:
        print("no node running with this configuration: starting one for the demo")
        node = Node(cfg, engine, sessions).start()
        port = node.port
    else:
        print(f"using the running node {cfg.node.ae_title} on port {port}")
    try:
        files = sorted((folder / "series").glob("*.dcm"))
        series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        print(f"phantom study written to {folder} (ground truth: {truth})")
        results = send_files(files, cfg.node.ae_title, "127.0.0.1", port, calling_ae="SPINENODE_DEMO")
        print(f"sent {sum(r.status == 0 for r in results)} of {len(files)} instances")
        job = _wait(sessions, series_uid, timeout_s)
        _wait_for_outbox(sessions, 15)
        return _report(cfg, sessions, job, out)
    finally:
        if node is not None:
            node.stop()


def _wait(sessions, series_uid: str, timeout_s: float) -> Job | None:  # noqa: ANN001
    start = time.monotonic()
    state = "waiting for the series to be assembled"
    while time.monotonic() - start < timeout_s:
        with sessions() as session:
            job = session.scalar(select(Job).join(Series).where(Series.series_uid == series_uid)
                                 .order_by(Job.id.desc()))
        if job is not None:
            state = f"job {job.id} {job.state}"
            if job.state in FINAL:
                print(f"\r{state} after {time.monotonic() - start:.1f} s" + " " * 20)
                return job
        sys.stdout.write(f"\r{state} ... {time.monotonic() - start:5.1f} s")
        sys.stdout.flush()
        time.sleep(0.5)
    print(f"\nno result within {timeout_s:.0f} s; see `spinenode status`")
    return None


def _wait_for_outbox(sessions, seconds: float) -> None:  # noqa: ANN001
    from dicomnode.db import OutboxState

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with sessions() as session:
            if not session.scalar(select(OutboxItem.id).where(OutboxItem.state == OutboxState.PENDING,
                                                              OutboxItem.attempts == 0)):
                return
        time.sleep(0.5)


def _report(cfg: Config, sessions, job: Job | None, out: Path) -> int:  # noqa: ANN001
    if job is None:
        return 1
    lines = ["# spinenode demo report", "", "NOT FOR DIAGNOSIS: research software, models trained on phantoms.", ""]
    if job.state is not JobState.DONE:
        why = ", ".join(job.reasons or []) or job.last_error
        lines.append(f"The series was not analysed: {job.state}, reason {why}.")
    else:
        result = job.result or {}
        cls, rad = result.get("classification"), result.get("radiomics")
        if cls:
            lines.append(f"Classification (3D classifier): {cls['class']}, "
                         f"P(metastasis) {cls['probability_metastasis']:.2f}")
        else:
            lines.append("Classification: off in this configuration (worker.use_classifier = false)")
        if rad:
            lines.append(f"Radiomics ({rad['mode']}-phase signature): Rad-score {rad['rad_score']:.2f}, "
                         f"P(metastasis) {rad['probability_metastasis']:.2f}")
        lines.append(f"Segmentation: {result.get('lesion_source')}; agreement with region growing "
                     f"(Dice) {result.get('agreement_dice')}")
        for les in result.get("lesions", []):
            lines.append(f"- lesion {les['index']}: {les['volume_mm3'] / 1000:.2f} mL, "
                         f"maximum diameter {les['max_diameter_mm']:.1f} mm, "
                         f"peak enhancement x{les['peak_enhancement']:.2f} marrow")
    for output in (job.result or {}).get("outputs", []):
        if output["sop_class_uid"] == SC_CLASS:
            pixels = pydicom.dcmread(cfg.data_dir / output["path"]).pixel_array
            Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(out / "key_image.png")
            lines.append("")
            lines.append(f"Key image written to {out / 'key_image.png'}")
    with sessions() as session:
        items = session.scalars(select(OutboxItem).where(OutboxItem.job_id == job.id)).all()
    lines.append("")
    lines.append("Results:")
    dests = {d.name: d for d in cfg.destinations}
    for item in items:
        d = dests.get(item.destination)
        where = f"{d.ae_title}@{d.host}:{d.port}" if d else item.destination
        note = f" (not delivered yet: {item.last_error}; the node keeps retrying)" if item.last_error else ""
        lines.append(f"- {NAMES.get(item.sop_class_uid, item.sop_class_uid)} -> {where}: {item.state}{note}")
    if not items:
        lines.append("- none queued (no [[destinations]] configured); outputs are under "
                     f"{cfg.data_dir / 'outputs'}")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    print(text)
    print(f"report written to {out / 'report.md'}")
    return 0 if job.state is JobState.DONE else 1
