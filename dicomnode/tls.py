"""DICOM over TLS (PS3.15 Annex B): SSL contexts from the configuration's certificate files.

Inbound (``[node]``): with ``tls_certificate`` and ``tls_private_key`` set, the SCP accepts only
TLS associations; with ``tls_ca_certificates`` also set, a client must present a certificate
signed by one of those CAs (mutual TLS). Outbound (``[[destinations]]``): ``tls = true`` makes
the sender verify the PACS's certificate (against ``tls_ca_certificates``, else the system's CAs)
and its host name; ``tls_certificate``/``tls_private_key`` add a client certificate.
TLS 1.2 is the minimum.
"""

from __future__ import annotations

import ssl

from dicomnode.config import Destination, NodeConfig
from dicomnode.errors import NodeError


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str, where: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise NodeError(f"{where}: cannot load certificate {cert!r} with key {key!r}: {exc}") from None


def _load_ca(ctx: ssl.SSLContext, ca: str, where: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise NodeError(f"{where}: cannot load CA certificates {ca!r}: {exc}") from None


def server_context(node: NodeConfig) -> ssl.SSLContext | None:
    """None when TLS is off (no certificate configured)."""
    if not node.tls_certificate:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, node.tls_certificate, node.tls_private_key, "node.tls_certificate")
    if node.tls_ca_certificates:
        _load_ca(ctx, node.tls_ca_certificates, "node.tls_ca_certificates")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(dest: Destination) -> ssl.SSLContext | None:
    """None when the destination is plain DICOM."""
    if not dest.tls:
        return None
    where = f"destinations[{dest.name}]"
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if dest.tls_ca_certificates:
        _load_ca(ctx, dest.tls_ca_certificates, f"{where}.tls_ca_certificates")
    if dest.tls_certificate:
        _load_chain(ctx, dest.tls_certificate, dest.tls_private_key, f"{where}.tls_certificate")
    return ctx
