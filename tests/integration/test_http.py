"""/healthz and /metrics of a running node, over real HTTP on localhost (ports from the OS)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dicomnode.config import HttpConfig
from dicomnode.errors import ConfigError
from dicomnode.node import Node
from tests.conftest import wait_for


def get(node: Node, path: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels), 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_healthy_node_says_so_check_by_check(node_factory) -> None:  # noqa: ANN001
    node = node_factory()
    assert node.http_port > 0
    assert (node.cfg.data_dir / "run" / "http.port").read_text().strip() == str(node.http_port)
    status, body = get(node, "/healthz")
    report = json.loads(body)
    assert status == 200 and report["status"] == "ok" and report["failed"] == []
    assert [c["name"] for c in report["checks"]] == ["database", "scp", "assembler", "workers", "disk"]
    assert next(c for c in report["checks"] if c["name"] == "scp")["detail"] == "C-ECHO answered"


def test_metrics_count_what_the_node_received_and_did(node_factory, series_files) -> None:  # noqa: ANN001
    from tests.integration.test_node import job_done, send

    node = node_factory()
    before = metric(get(node, "/metrics")[1], 'spinenode_instances_received_total{status="0x0000"}')
    assert send(node, series_files(101)) == [0] * 12
    wait_for(lambda: job_done(node), timeout=120)
    status, text = get(node, "/metrics")
    assert status == 200
    assert metric(text, 'spinenode_instances_received_total{status="0x0000"}') == before + 12
    assert metric(text, 'spinenode_jobs{state="done"}') == 1
    assert metric(text, 'spinenode_series{state="complete"}') == 1
    assert metric(text, 'spinenode_stage_seconds_count{stage="unet"}') >= 1
    assert "spinenode_queue_oldest_seconds 0.0" in text
    assert "PHANTOM" not in text and "PH0000" not in text  # no patient identifiers


def test_a_broken_database_makes_health_fail_and_says_why(node_factory) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0})
    with node.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE jobs RENAME TO jobs_gone")
    status, body = get(node, "/healthz")
    report = json.loads(body)
    assert status == 503 and report["failed"] == ["database"]
    assert "query failed: OperationalError" in json.dumps(report["checks"])


def test_a_database_that_reads_but_takes_no_write_makes_health_fail(node_factory) -> None:  # noqa: ANN001
    """Another process holds the write lock (a stuck writer): reads still answer, writes wait."""
    import sqlite3

    node = node_factory(worker={"workers": 0})
    holder = sqlite3.connect(node.cfg.data_dir / "spinenode.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        status, body = get(node, "/healthz")
        report = json.loads(body)
        assert status == 503 and report["failed"] == ["database"]
        detail = next(c["detail"] for c in report["checks"] if c["name"] == "database")
        assert detail == "write failed: OperationalError: database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, body = get(node, "/healthz")
    assert status == 200, body
    assert "writable" in body


def test_an_assembler_that_stopped_running_makes_health_fail(node_factory) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0}, protocol={"check_interval_s": 0.5})
    assert node._scheduler is not None
    node._scheduler.pause()  # its jobs no longer run, as when the scheduler thread hangs
    try:
        wait_for(lambda: get(node, "/healthz")[0] == 503, timeout=30)
        report = json.loads(get(node, "/healthz")[1])
        assert report["failed"] == ["assembler"]
        assert "limit 6.5 s" in json.dumps(report["checks"])
    finally:
        node._scheduler.resume()
    wait_for(lambda: get(node, "/healthz")[0] == 200, timeout=30)


def test_a_worker_that_hangs_makes_health_fail(node_factory, monkeypatch) -> None:  # noqa: ANN001
    """The worker thread blocks in a database call that never returns (a stalled network share or
    server): no poll and no heartbeat, so /healthz says so while the rest of the node works."""
    import threading

    from dicomnode import queue

    release = threading.Event()
    real_claim = queue.claim

    def hanging_claim(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        release.wait(60)
        return real_claim(*args, **kwargs)

    node = node_factory(worker={"heartbeat_s": 0.5, "lease_s": 5, "poll_interval_s": 0.1})
    wait_for(lambda: get(node, "/healthz")[0] == 200, timeout=30)
    monkeypatch.setattr(queue, "claim", hanging_claim)
    try:
        wait_for(lambda: get(node, "/healthz")[0] == 503, timeout=30)
        report = json.loads(get(node, "/healthz")[1])
        assert report["failed"] == ["workers"]
        assert "0 of 1 seen within 2.5 s" in json.dumps(report["checks"])
    finally:
        release.set()
    monkeypatch.setattr(queue, "claim", real_claim)
    wait_for(lambda: get(node, "/healthz")[0] == 200, timeout=30)


def test_an_scp_that_accepts_no_association_makes_health_fail(node_factory) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0})
    assert node._server is not None
    node._server.shutdown()
    node._server = None  # stopped here, not again by the fixture
    status, body = get(node, "/healthz")
    assert status == 503 and json.loads(body)["failed"] == ["scp"]


def test_off_loopback_the_http_side_needs_credentials(node_factory) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="http.username"):
        HttpConfig(host="0.0.0.0")
    node = node_factory(http={"port": 0, "username": "admin", "password": "s3cret"})
    assert get(node, "/healthz")[0] == 401
    assert get(node, "/healthz", ("admin", "wrong"))[0] == 401
    assert get(node, "/metrics", ("admin", "s3cret"))[0] == 200


def test_the_http_side_can_be_turned_off(node_factory, tmp_path: Path) -> None:  # noqa: ANN001
    node = node_factory(http={"enabled": False})
    assert node.http_port == 0 and not (node.cfg.data_dir / "run" / "http.port").exists()


def test_status_page_shows_the_job_its_timings_and_its_key_image(node_factory, series_files) -> None:  # noqa: ANN001
    """The page a PACS administrator opens: counts, the finished job with its finding and stage
    timings, and the key image it made (a PNG of the key image's pixels); no patient identifiers."""
    import io

    import pydicom
    from PIL import Image

    from tests.integration.test_node import job_done, send

    node = node_factory()
    status, page = get(node, "/")
    assert status == 200 and "no jobs yet" in page and "no finished job yet" in page
    assert send(node, series_files(101)) == [0] * 12
    wait_for(lambda: job_done(node), timeout=120)
    status, page = get(node, "/")
    assert status == 200 and '<meta http-equiv="refresh"' in page
    assert f"<code>SPINENODE</code> on port {node.port}" in page
    assert "instances</b>12" in page and "done 1" in page
    assert 'class="state-done">done' in page and "P(metastasis)" in page
    assert "unet " in page and "region_growing " in page  # stage timings
    assert 'src="jobs/1/key.png"' in page
    assert "PHANTOM" not in page and "PH0000" not in page and "1919" not in page  # no patient identifiers
    request = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/jobs/1/key.png")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "image/png"
        png = Image.open(io.BytesIO(response.read()))
    with node.sessions() as session:
        from dicomnode.db import Job

        result = session.get(Job, 1).result
    key = next(o for o in result["outputs"] if o["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.7")
    ds = pydicom.dcmread(node.cfg.data_dir / key["path"])
    assert png.size == (ds.Columns, ds.Rows) and png.mode == "RGB"
    assert get(node, "/jobs/999/key.png")[0] == 404


def test_status_page_escapes_what_it_shows(node_factory) -> None:  # noqa: ANN001
    """A reason text from the database is shown as text, never as markup."""
    from dicomnode import dashboard
    from dicomnode.db import Job, JobKind, JobState, Series, SeriesState, Study

    node = node_factory(worker={"workers": 0})
    with node.sessions.begin() as session:
        study = Study(study_uid="1.2")
        series = Series(series_uid="1.2.3", study=study, state=SeriesState.COMPLETE)
        session.add_all([study, series, Job(series=series, kind=JobKind.ANALYSE, state=JobState.DEAD, attempts=3,
                                            max_attempts=3, last_error="<script>alert(1)</script>")])
    page = dashboard.render(node.cfg, node.sessions)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
