"""Results by DICOMweb STOW-RS into a real Orthanc (Debian's orthanc-dicomweb plugin) over HTTPS (a
TLS-terminating proxy in front of it, certificates from a throw-away CA): the node as a subprocess
sends SEG, SR and key image, found again by QIDO-RS under the right study; wrong credentials, or an
archive whose certificate the configured CA did not sign, keep the results queued with the reason
as the error, never lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.acceptance.orthanc import PASSWORD, USER, TlsTerminator, free_port, start_orthanc
from tests.certificates import make_certificates
from tests.conftest import require_tool, wait_for, write_config

pytestmark = pytest.mark.acceptance
RESULT_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7"}


def _status(config: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "dicomnode", "status", "--config", str(config), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_results_reach_orthanc_by_stow_rs(tmp_path: Path, phantom_dir: Path) -> None:
    assert Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").exists(), \
        "orthanc-dicomweb is not installed: run scripts/install.sh --test"
    (tmp_path / "certs").mkdir()
    certs = make_certificates(tmp_path / "certs")
    orthanc = start_orthanc(tmp_path, free_port())
    https = TlsTerminator(orthanc.http_port, certs / "server.pem", certs / "server.key").__enter__()
    node, log = None, (tmp_path / "serve.log").open("w")
    try:
        assert orthanc.json("/plugins") and "dicom-web" in orthanc.json("/plugins")
        url = f"https://127.0.0.1:{https.port}/dicom-web"
        config = write_config(tmp_path, sender={"retry_base_s": 0.3, "retry_max_s": 1.0, "poll_interval_s": 0.2,
                                                "max_attempts": 10_000})  # refused copies stay pending
        with config.open("a") as fh:
            for name, password, ca in (("archive", PASSWORD, "ca.pem"), ("untrusted", PASSWORD, "other.pem"),
                                       ("wrong-password", "not-the-password", "ca.pem")):
                fh.write(f'[[destinations]]\nname = "{name}"\nkind = "dicomweb"\nurl = "{url}"\n'
                         f'username = "{USER}"\npassword = "{password}"\ntls_ca_certificates = "{certs / ca}"\n')
        node = subprocess.Popen([sys.executable, "-m", "dicomnode", "serve", "--config", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        port_file = tmp_path / "var" / "run" / "scp.port"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=60)
        folder = phantom_dir / "study_103" / "series"
        run = subprocess.run([require_tool("storescu"), "-aec", "SPINENODE", "+sd", "127.0.0.1",
                              port_file.read_text().strip(), str(folder)], capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        source = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)

        def stored() -> list[dict]:
            return [orthanc.json(f"/instances/{i}/tags?simplify") for i in orthanc.json("/instances")]

        found = wait_for(lambda: (s := stored()) and {t["SOPClassUID"] for t in s} >= RESULT_CLASSES and s,
                         timeout=180)
        assert all(t["StudyInstanceUID"] == source.StudyInstanceUID and t["PatientID"] == source.PatientID
                   for t in found)
        # and a DICOMweb client finds them under the right study (QIDO-RS)
        qido = orthanc.json(f"/dicom-web/studies/{source.StudyInstanceUID}/series")
        assert sorted(s["00080060"]["Value"][0] for s in qido) == ["OT", "SEG", "SR"]
        report = wait_for(lambda: (r := _status(config))["outbox"]["sent"] == 3 and r, timeout=60)
        assert report["outbox"]["dead"] == 0 and report["outbox"]["pending"] == 6  # the two refused copies
        errors = wait_for(lambda: (e := _pending_errors(tmp_path / "var" / "spinenode.db")) and len(e) == 6 and e,
                          timeout=60)  # one per result and refusing destination, each with its reason
        by_destination = {dest: [e for d, e in errors if d == dest] for dest in ("wrong-password", "untrusted")}
        assert all("HTTP 401" in e for e in by_destination["wrong-password"])
        assert all("CERTIFICATE_VERIFY_FAILED" in e for e in by_destination["untrusted"]), by_destination
    finally:
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
        log.close()
        https.__exit__()
        orthanc.stop()


def _pending_errors(db: Path) -> list[tuple[str, str]]:
    """(destination, last error) of the outbox rows that failed at least once and wait."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT destination, last_error FROM outbox WHERE state = 'PENDING' "
                            "AND last_error IS NOT NULL").fetchall()
    return [(d, e) for d, e in rows]
