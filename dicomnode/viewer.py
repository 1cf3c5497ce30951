"""OHIF Viewer for the node's results: OHIF's built viewer and an Orthanc's DICOMweb under one origin.

The viewer is OHIF's published build (the ``dist/`` of the npm package ``@ohif/app``, nothing is
built here; scripts/install.sh --viewer unpacks it under ``.cache/ohif/<version>/dist``). One small
HTTP server serves it, a generated ``app-config.js`` whose one data source is this server's
``/dicom-web``, and ``/dicom-web/...`` proxied to Orthanc's DICOMweb plugin with Orthanc's HTTP
basic authentication added. The browser sees one origin: no CORS, no credentials in the page.

Because the proxy adds the credentials, anyone who reaches the server reads the archive: it
listens on the loopback interface only. Its request log keeps paths, never query strings (OHIF's
QIDO-RS queries carry the patient ID). Networking only: no image is decoded here.
"""

from __future__ import annotations

import base64
import http.client
import json
import mimetypes
import shutil
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dicomnode.errors import NodeError
from dicomnode.logs import get_logger

log = get_logger(__name__)

OHIF_VERSION = "3.13.2"
# the source checkout this package runs from (scripts/install.sh puts the viewer's build under it)
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# what Python's table lacks or gets wrong for a bundle: wasm for the codecs, js as the HTML spec says
MIME = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
        ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".html": "text/html"}
# request headers the proxy passes on to Orthanc (its DICOMweb plugin negotiates on Accept)
FORWARDED = ("accept", "content-type", "range")
LOOPBACK = "127.0.0.1"


def ohif_dist(root: Path | None = None) -> Path:
    """Where scripts/install.sh --viewer unpacks OHIF's build: ``<root>/.cache/ohif/<OHIF_VERSION>/dist``,
    ``root`` being the source checkout by default."""
    return (root or SOURCE_ROOT) / ".cache" / "ohif" / OHIF_VERSION / "dist"


def require_dist(dist: Path) -> Path:
    """``dist`` when it holds OHIF's build (its index.html), else a NodeError that says how to get it."""
    if not (dist / "index.html").is_file():
        raise NodeError(f"OHIF Viewer {OHIF_VERSION} is not unpacked at {dist}: run scripts/install.sh --viewer "
                        f"(it fetches @ohif/app@{OHIF_VERSION} with npm pack)")
    return dist


def app_config(origin: str, name: str = "Orthanc") -> str:
    """OHIF's ``window.config``: dist/app-config.js (3.13's default) with its one DICOMweb source
    pointed at ``origin``/dicom-web, images and thumbnails both from WADO-RS frames; the default's
    static-WADO and bulk-data-URI transform, made for OHIF's S3 demo server, are left out."""
    root = f"{origin}/dicom-web"
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": name, "name": "orthanc",
            "wadoUriRoot": root, "qidoRoot": root, "wadoRoot": root,
            "qidoSupportsIncludeField": False, "imageRendering": "wadors", "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
            "singlepart": "bulkdata,video", "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config: dict[str, object] = {
        "routerBasename": None, "extensions": [], "modes": [],
        # no onboarding tour and no investigational-use banner over the page
        "customizationService": {"ohif.tours": {"$set": []}}, "investigationalUseDialog": {"option": "never"},
        "showStudyList": True, "maxNumberOfWebWorkers": 2, "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True, "showLoadingIndicator": True, "strictZSpacingForVolumeViewport": True,
        "groupEnabledModesFirst": True, "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "showErrorDetails": "always", "defaultDataSourceName": "dicomweb", "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class _Handler(BaseHTTPRequestHandler):
    """Files from the dist (unknown routes get index.html, as OHIF's own serve.json rewrites),
    ``/app-config.js`` generated, ``/dicom-web/...`` passed to Orthanc."""

    server: OhifServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/dicom-web/"):
            self._proxy()
        elif path == "/app-config.js":
            self._send(200, MIME[".js"], self.server.config_js.encode())
        else:
            self._file(unquote(path))

    def do_POST(self) -> None:
        if urlsplit(self.path).path.startswith("/dicom-web/"):
            self._proxy()
        else:
            self._send(405, "text/plain", b"only /dicom-web/ takes requests other than GET\n")

    do_PUT = do_DELETE = do_POST  # STOW-RS and deletes, should OHIF send any

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, path: str) -> None:
        dist = self.server.dist
        target = (dist / path.lstrip("/")).resolve()
        if not target.is_relative_to(dist):
            self._send(403, "text/plain", b"outside the viewer\n")
            return
        if not target.is_file():
            if "." in Path(path).name:  # a missing asset is a 404, not the app's page
                self._send(404, "text/plain", b"not found\n")
                return
            target = dist / "index.html"
        content_type = MIME.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(target.stat().st_size))
        if target.name != "index.html":  # the bundle's file names carry their hash: reloads reuse them
            self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        with target.open("rb") as fh:
            shutil.copyfileobj(fh, self.wfile)

    def _proxy(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
        headers["Authorization"] = self.server.authorization
        # Orthanc writes BulkDataURIs from the Host it was asked on: keep the viewer's origin
        headers["Host"] = self.headers.get("Host", "")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(self.server.orthanc_host, self.server.orthanc_port, timeout=120)
        try:
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            except OSError as exc:
                self._send(502, "text/plain", f"Orthanc did not answer: {exc}\n".encode())
                return
            self.send_response(response.status)
            for name in ("Content-Type", "Content-Length"):
                if response.getheader(name):
                    self.send_header(name, response.getheader(name, ""))
            self.end_headers()
            while chunk := response.read(1 << 16):  # streamed; chunked transfer is undone by http.client
                self.wfile.write(chunk)
        finally:
            conn.close()

    def log_message(self, format: str, *args: object) -> None:
        # the path only: OHIF's queries carry the patient ID
        status = args[1] if len(args) > 1 else ""
        self.server.requests.append(f"{self.command} {urlsplit(self.path).path} {status}")


class OhifServer(ThreadingHTTPServer):
    """The viewer's server on ``LOOPBACK``:``port`` (0: the OS chooses; ``origin`` says which).
    ``requests`` keeps "METHOD path status" of the last 2000 requests."""

    daemon_threads = True

    def __init__(self, dist: Path, orthanc_port: int, *, username: str, password: str,
                 orthanc_host: str = LOOPBACK, port: int = 0) -> None:
        self.dist = require_dist(dist).resolve()
        super().__init__((LOOPBACK, port), _Handler)
        self.orthanc_host, self.orthanc_port = orthanc_host, orthanc_port
        self.authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.origin = f"http://{LOOPBACK}:{self.server_address[1]}"
        self.config_js = app_config(self.origin)
        self.requests: deque[str] = deque(maxlen=2000)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the browser went away (a cancelled image load): nothing to say
            return
        log.warning("viewer_request_failed", error=repr(error))

    def viewer_url(self, study_uid: str) -> str:
        """The page that opens ``study_uid`` in OHIF's basic viewer."""
        return f"{self.origin}/viewer?StudyInstanceUIDs={study_uid}"


@contextmanager
def serve_ohif(dist: Path, orthanc_port: int, *, username: str, password: str,
               orthanc_host: str = LOOPBACK, port: int = 0) -> Iterator[OhifServer]:
    """OHIF and Orthanc's DICOMweb (``orthanc_host``:``orthanc_port``, its user and password) under
    one origin, served from a thread until the block ends."""
    server = OhifServer(dist, orthanc_port, username=username, password=password, orthanc_host=orthanc_host,
                        port=port)
    thread = threading.Thread(target=server.serve_forever, name="ohif-server", daemon=True)
    thread.start()
    log.info("viewer_serving", origin=server.origin, ohif_version=OHIF_VERSION, orthanc_port=orthanc_port)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        log.info("viewer_stopped", origin=server.origin)
