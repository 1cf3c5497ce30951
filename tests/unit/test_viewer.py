"""dicomnode.viewer's server on a made-up dist and a stand-in for Orthanc (the real ones are in
tests/acceptance/test_ohif.py and test_demo_viewer.py)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dicomnode.errors import NodeError
from dicomnode.viewer import OHIF_VERSION, app_config, ohif_dist, require_dist, serve_ohif


class _Upstream(BaseHTTPRequestHandler):
    """Answers every request with what it was asked: method, path, the headers the proxy sent, the body."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = {"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization"),
                "host": self.headers.get("Host"), "accept": self.headers.get("Accept"),
                "cookie": self.headers.get("Cookie"), "body": body.decode()}
        data = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text("<html>OHIF</html>")
    (folder / "app.bundle.js").write_text("console.log('app')")
    (folder / "assets" / "codec.wasm").write_bytes(b"\0asm")
    (tmp_path / "secret.txt").write_text("outside")
    return folder


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def raw_get(port: int, path: str) -> int:
    """The status of a GET of ``path`` sent as it is (no client normalises it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_dist_is_under_the_checkout_and_its_absence_says_how_to_get_it(tmp_path: Path) -> None:
    assert ohif_dist(tmp_path) == tmp_path / ".cache" / "ohif" / OHIF_VERSION / "dist"
    with pytest.raises(NodeError, match=r"run scripts/install.sh --viewer"):
        require_dist(ohif_dist(tmp_path))


def test_files_app_config_and_routes(dist: Path, upstream: int) -> None:
    with serve_ohif(dist, upstream, username="orthanc-user", password="orthanc-password") as server:
        origin = server.origin
        assert fetch(f"{origin}/app.bundle.js")[:2] == (200, "text/javascript")
        assert fetch(f"{origin}/assets/codec.wasm")[1] == "application/wasm"
        status, kind, body = fetch(f"{origin}/viewer?StudyInstanceUIDs=1.2.3")  # the app's own route
        assert (status, kind, body) == (200, "text/html", b"<html>OHIF</html>")
        assert fetch(f"{origin}/missing.js")[0] == 404
        assert fetch(f"{origin}/%2e%2e/secret.txt")[0] == 403
        assert raw_get(server.server_address[1], "/../secret.txt") == 403
        assert fetch(f"{origin}/index.html", data=b"x")[0] == 405  # only /dicom-web/ takes a POST
        config = fetch(f"{origin}/app-config.js")[2].decode()
    assert config == app_config(origin)
    window = json.loads(config.removeprefix("window.config = ").rstrip(";\n"))
    (source,) = window["dataSources"]
    assert source["configuration"]["qidoRoot"] == source["configuration"]["wadoRoot"] == f"{origin}/dicom-web"
    assert "orthanc-user" not in config and "orthanc-password" not in config  # no credentials in the page


def test_dicom_web_is_proxied_with_orthancs_credentials_and_the_viewers_host(dist: Path, upstream: int) -> None:
    with serve_ohif(dist, upstream, username="spinenode", password="secret") as server:
        url = f"{server.origin}/dicom-web/studies?PatientID=PH00000001&limit=1"
        status, kind, body = fetch(url, headers={"Accept": "application/dicom+json", "Cookie": "c=1"})
        stored = fetch(f"{server.origin}/dicom-web/studies", data=b"part",
                       headers={"Content-Type": "multipart/related"})
        requests = list(server.requests)
    seen = json.loads(body)
    assert (status, kind) == (200, "application/dicom+json")
    assert seen["path"] == "/dicom-web/studies?PatientID=PH00000001&limit=1"
    assert seen["authorization"] == "Basic " + base64.b64encode(b"spinenode:secret").decode()
    assert seen["host"] == server.origin.removeprefix("http://")  # Orthanc's BulkDataURIs point at the viewer
    assert seen["accept"] == "application/dicom+json" and seen["cookie"] is None
    assert json.loads(stored[2])["method"] == "POST" and json.loads(stored[2])["body"] == "part"
    # the request log keeps paths, never the query (it carries the patient ID)
    assert requests == ["GET /dicom-web/studies 200", "POST /dicom-web/studies 200"]


def test_orthanc_down_is_a_502(dist: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with serve_ohif(dist, port, username="u", password="p") as server:
        status, _, body = fetch(f"{server.origin}/dicom-web/studies")
    assert status == 502 and b"Orthanc did not answer" in body
