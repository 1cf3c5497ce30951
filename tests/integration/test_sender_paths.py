"""The sender's other paths through a running node: two destinations at once, one that answers
with a warning status and one over DICOM TLS, then ``spinenode resend --job`` as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from dicomnode.config import NodeConfig, load_config
from dicomnode.db import OutboxItem, OutboxState
from dicomnode.node import Node, setup
from dicomnode.scu import send_files
from dicomnode.tls import server_context
from tests.certificates import make_certificates
from tests.conftest import REPO, wait_for, write_config
from tests.integration.test_results import FakePacs, outbox

WARNING = 0xB000  # PS3.4 C-STORE "coercion of data elements": stored, with a warning


def _destinations(warning_port: int, tls_port: int, certs: Path) -> str:
    return (f'[[destinations]]\nname = "archive"\nae_title = "PACS"\nhost = "127.0.0.1"\nport = {warning_port}\n'
            f'[[destinations]]\nname = "secure"\nae_title = "PACS"\nhost = "127.0.0.1"\nport = {tls_port}\n'
            f'tls = true\ntls_ca_certificates = "{certs / "ca.pem"}"\n')


def _events(node: Node, event: str) -> list[dict]:
    lines = (node.cfg.data_dir / "logs" / "spinenode.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def test_two_destinations_a_warning_and_tls_then_resend_job(tmp_path: Path, series_files) -> None:  # noqa: ANN001
    (tmp_path / "certs").mkdir()
    certs = make_certificates(tmp_path / "certs")
    tls = server_context(NodeConfig(tls_certificate=str(certs / "server.pem"),
                                    tls_private_key=str(certs / "server.key")))
    warning, secure = FakePacs(status=WARNING), FakePacs(ssl_context=tls)
    node = None
    try:
        path = write_config(tmp_path, sender={"retry_base_s": 0.2, "retry_max_s": 0.5, "poll_interval_s": 0.2})
        with path.open("a") as fh:
            fh.write(_destinations(warning.port, secure.port, certs))
        cfg = load_config(path, environ={})
        node = Node(cfg, *setup(cfg)).start()
        send_files(series_files(101), "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
        wait_for(lambda: len(outbox(node)) == 6 and all(i.state is OutboxState.SENT for i in outbox(node)),
                 timeout=120)
        uids = {ds.SOPInstanceUID for ds in warning.received}
        assert len(warning.received) == len(secure.received) == 3  # SEG, SR, key image to each
        assert {ds.SOPInstanceUID for ds in secure.received} == uids
        assert {i.destination for i in outbox(node)} == {"archive", "secure"}
        warned = _events(node, "result_sent_with_warning")
        assert sorted(e["sop_instance_uid"] for e in warned) == sorted(uids)
        assert {(e["destination"], e["status"]) for e in warned} == {("archive", "0xb000")}

        (job_id,) = {i.job_id for i in outbox(node)}
        run = subprocess.run([sys.executable, "-m", "dicomnode", "resend", "--job", str(job_id), "--config", str(path)],
                             capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        assert run.returncode == 0, run.stderr
        assert "queued 6 outbox item(s) again" in run.stdout
        wait_for(lambda: len(warning.received) == len(secure.received) == 6, timeout=60)
        wait_for(lambda: all(i.state is OutboxState.SENT for i in outbox(node)), timeout=30)
        assert {ds.SOPInstanceUID for ds in warning.received[3:]} == uids  # the same objects, not new ones
        with node.sessions() as s:
            # resend starts each item's retry count afresh: one attempt since, the one that succeeded
            assert list(s.scalars(select(OutboxItem.attempts))) == [1] * 6
    finally:
        if node is not None:
            node.stop()
        warning.stop()
        secure.stop()
