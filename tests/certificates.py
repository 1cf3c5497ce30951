"""Throw-away certificates made with openssl for the TLS tests: a CA, a server certificate for
127.0.0.1, a client certificate, and a second CA that signed nothing here."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_tool


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, cn: str, folder: Path, extensions: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=folder)
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


def make_certificates(folder: Path) -> Path:
    """Writes ca.pem/key, server.pem/key (CN and SAN 127.0.0.1), client.pem/key, other.pem/key
    under ``folder``."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=spinenode test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=folder)
    _signed("server", "127.0.0.1", folder, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    _signed("client", "MODALITY", folder, "extendedKeyUsage=clientAuth")
    # a second CA that signed nothing here: trusting it alone must fail
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=someone else", cwd=folder)
    return folder
