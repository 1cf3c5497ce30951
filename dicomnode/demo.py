"""`spinenode demo`: the whole path on this machine, from a synthetic study to results.

Uses the node that is running with the same configuration (found through
``data_dir/run/scp.port`` and a C-ECHO), or starts one in this process for the demo. Generates
a phantom study, sends it, shows progress while the job runs, then prints the findings and where
the results went, and writes the key image as a PNG and a short report.

With ``--viewer`` (``run_viewer_demo``) the study goes to Debian's Orthanc on this machine, which
routes it to a node of this process as a site's PACS would; the results go back to Orthanc and
OHIF Viewer shows the study with them until Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pynetdicom import AE
from sqlalchemy import select

from dicomnode import logs, orthanc
from dicomnode.config import Config, Destination
from dicomnode.db import Job, JobState, OutboxItem, Series
from dicomnode.errors import NodeError
from dicomnode.node import Node, setup
from dicomnode.scu import send_files
from dicomnode.viewer import require_dist, serve_ohif

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


def run_demo(cfg: Config, out: Path, folder: Path, truth: str, timeout_s: float = 300, *,
             pacs: tuple[str, int] | None = None) -> int:
    """Send the study written under ``folder`` (its series/ folder) through the node and report.

    The CLI makes the phantom study (``truth`` describes it): the node's own modules never import
    the phantom generator. ``pacs``: (AE title, port) of a PACS on this machine that routes the
    series to the node (the viewer demo's Orthanc); the study is sent there instead, and the node
    is this process's own.
    """
    # progress goes to the console; the node's own log lines go to its JSON log file only
    cfg = replace(cfg, logging=replace(cfg.logging, console=False), http=replace(cfg.http, enabled=False))
    engine, sessions = setup(cfg)
    port = None if pacs else _running_port(cfg)
    node = None
    if port is None:
        print("no node running with this configuration: starting one for the demo" if pacs is None
              else f"starting a node for the demo on port {cfg.node.port}")
        node = Node(cfg, engine, sessions).start()
        port = node.port
    else:
        print(f"using the running node {cfg.node.ae_title} on port {port}")
    try:
        files = sorted((folder / "series").glob("*.dcm"))
        series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        print(f"phantom study written to {folder} (ground truth: {truth})")
        ae_title, to_port = pacs or (cfg.node.ae_title, port)
        results = send_files(files, ae_title, "127.0.0.1", to_port, calling_ae="SPINENODE_DEMO")
        where = f" to {ae_title} (it routes the series to the node)" if pacs else ""
        print(f"sent {sum(r.status == 0 for r in results)} of {len(files)} instances{where}")
        job = _wait(sessions, series_uid, timeout_s)
        _wait_for_outbox(sessions, 15)
        return _report(cfg, sessions, job, out)
    finally:
        if node is not None:
            node.stop()


def run_viewer_demo(cfg: Config, out: Path, folder: Path, truth: str, *, dist: Path, viewer_port: int = 0,
                    timeout_s: float = 300) -> int:
    """The demo with a PACS and a viewer: Debian's Orthanc receives the study and routes it to a
    node of this process, whose results go back to that Orthanc; OHIF Viewer then shows them
    (``dicomnode.viewer``) until Ctrl-C, when the viewer, Orthanc and its storage go."""
    require_dist(dist)
    orthanc.check_installed()
    if _running_port(cfg) is not None:
        raise NodeError(f"a node is running with this configuration (data_dir {cfg.data_dir}): stop it, or give "
                        "the viewer demo a configuration of its own (its node sends the results to its Orthanc)")
    study_uid = str(pydicom.dcmread(next((folder / "series").glob("*.dcm")), stop_before_pixels=True)
                    .StudyInstanceUID)
    # the console is the demo's: no log lines there (the node's setup sends them to its JSON log file)
    logs.configure(cfg.logging.level, None, console=False)
    node_port = orthanc.free_port()
    pacs = orthanc.start_orthanc(out / "orthanc.log", node_ae=cfg.node.ae_title, node_port=node_port)
    print(f"Orthanc (the PACS) on DICOM port {pacs.dicom_port}, HTTP port {pacs.http_port}; log {out / 'orthanc.log'}")
    try:
        code = run_demo(_viewer_config(cfg, node_port, pacs), out, folder, truth, timeout_s,
                        pacs=(pacs.ae_title, pacs.dicom_port))
        with serve_ohif(dist, pacs.http_port, username=pacs.username, password=pacs.password,
                        port=viewer_port) as server:
            print(f"\nOHIF Viewer: {server.viewer_url(study_uid)}", flush=True)
            print("Ctrl-C stops the viewer and Orthanc (its storage is removed)", flush=True)
            _wait_for_interrupt()
        print("stopping")
        return code
    finally:
        pacs.stop()


def _viewer_config(cfg: Config, node_port: int, pacs: orthanc.LocalOrthanc) -> Config:
    """The node of the viewer demo: on 127.0.0.1:``node_port`` without TLS, taking Orthanc's
    associations, its results going to that Orthanc only."""
    allowed = cfg.node.allowed_calling_aes
    if allowed and pacs.ae_title not in allowed:
        allowed = (*allowed, pacs.ae_title)
    node = replace(cfg.node, host="127.0.0.1", port=node_port, allowed_calling_aes=allowed, tls_certificate="",
                   tls_private_key="", tls_ca_certificates="")
    destination = Destination(name="demo-orthanc", ae_title=pacs.ae_title, host="127.0.0.1", port=pacs.dicom_port)
    return replace(cfg, node=node, destinations=(destination,))


def _wait_for_interrupt() -> None:
    """Until Ctrl-C or SIGTERM. Both are handled here: a shell starts a background job with SIGINT
    ignored, and Python then raises no KeyboardInterrupt of its own."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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


def _analysis_lines(result: dict) -> list[str]:
    """The finding the SR codes, the two models' answers and the lesions, from a job's result."""
    lines: list[str] = []
    cls, rad, verdict = result.get("classification"), result.get("radiomics"), result.get("verdict")
    if verdict:  # what the SR codes and the key image shows
        why = f" ({', '.join(verdict['reasons'])})" if verdict["reasons"] else ""
        lines.append(f"Finding coded in the report: {verdict['finding']}{why}")
    if cls:
        lines.append(f"Classification (3D classifier): {cls['class']}, "
                     f"P(metastasis) {cls['probability_metastasis']:.2f}")
    else:
        lines.append("Classification: off in this configuration (worker.use_classifier = false)")
    if rad:
        lines.append(f"Radiomics ({rad['mode']}-phase signature): Rad-score {rad['rad_score']:.2f}, "
                     f"P(metastasis) {rad['probability_metastasis']:.2f}")
    lines.append(f"Segmentation: {result.get('lesion_source')}; agreement with region growing: "
                 f"Dice {result.get('agreement_dice')}, overlap {result.get('agreement_overlap')}")
    for les in result.get("lesions", []):
        lines.append(f"- lesion {les['index']}: {les['volume_mm3'] / 1000:.2f} mL, "
                     f"maximum diameter {les['max_diameter_mm']:.1f} mm, "
                     f"peak enhancement x{les['peak_enhancement']:.2f} marrow")
    return lines


def _report(cfg: Config, sessions, job: Job | None, out: Path) -> int:  # noqa: ANN001
    if job is None:
        return 1
    lines = ["# spinenode demo report", "", "NOT FOR DIAGNOSIS: research software, models trained on phantoms.", ""]
    if job.state is not JobState.DONE:
        why = ", ".join(job.reasons or []) or job.last_error
        lines.append(f"The series was not analysed: {job.state}, reason {why}.")
    else:
        lines += _analysis_lines(job.result or {})
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
