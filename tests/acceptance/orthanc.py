"""Helpers for acceptance tests against a real Orthanc (Debian's package via run-orthanc.sh)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

from dicomnode.orthanc import LocalOrthanc as Orthanc
from dicomnode.orthanc import free_port
from dicomnode.orthanc import start_orthanc as _start

__all__ = ["PASSWORD", "USER", "Orthanc", "TlsTerminator", "free_port", "start_orthanc"]

USER, PASSWORD = "spinenode", "spinenode-test"  # orthanc-test/orthanc.json's RegisteredUsers


def start_orthanc(tmp: Path, node_port: int, *, stable_age: int = 2, dicom_port: int | None = None) -> Orthanc:
    """The node's own helper (``dicomnode.orthanc``), its log and database under ``tmp``."""
    return _start(tmp / "orthanc.log", node_ae="SPINENODE", node_port=node_port, stable_age=stable_age,
                  storage=tmp / "orthanc-db", dicom_port=dicom_port)


class TlsTerminator:
    """HTTPS in front of Orthanc's HTTP port, as the Orthanc Book recommends (a reverse proxy
    terminates TLS): Debian's Orthanc 1.10 resets every HTTPS connection after the handshake with
    OpenSSL 3, so its own SslEnabled cannot be used. Real TLS on both ends (Python's ssl, OpenSSL),
    bytes forwarded unchanged; a context manager, stopped on exit."""

    def __init__(self, target_port: int, certificate: Path, key: Path) -> None:
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TlsTerminator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that did not trust our certificate: its side reports why
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
