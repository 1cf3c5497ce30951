"""C-STORE as a service user: send files to an AE (``spinenode send``; the outbox sender later)."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.presentation import build_context

from dicomnode.errors import NodeError
from pipeline.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME


@dataclass(frozen=True)
class SendResult:
    path: Path
    status: int | None  # None: no response (association failed or aborted)


def _contexts(datasets: Sequence[pydicom.Dataset]) -> list:
    """One context per (SOP class, transfer syntax) actually present: propose only those."""
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})
    if len(pairs) > 128:
        raise NodeError(f"{len(pairs)} SOP class/transfer syntax pairs: at most 128 per association")
    return [build_context(sop, [ts]) for sop, ts in pairs]


def send_files(paths: Iterable[Path], ae_title: str, host: str, port: int, *,
               calling_ae: str = "SPINENODE", timeout: float = 30,
               ssl_context: ssl.SSLContext | None = None) -> list[SendResult]:
    """C-STORE every file over one association; one result per file, in order."""
    paths = list(paths)
    statuses = send_datasets([pydicom.dcmread(p) for p in paths], ae_title, host, port, calling_ae=calling_ae,
                             timeout=timeout, ssl_context=ssl_context)
    return [SendResult(p, s) for p, s in zip(paths, statuses, strict=True)]


def send_datasets(datasets: Sequence[pydicom.Dataset], ae_title: str, host: str, port: int, *,
                  calling_ae: str = "SPINENODE", timeout: float = 30,
                  ssl_context: ssl.SSLContext | None = None) -> list[int | None]:
    """C-STORE datasets over one association (TLS when ``ssl_context`` is given, checking the
    peer's certificate against ``host``); one status per dataset, None where none came back."""
    ae = AE(ae_title=calling_ae)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.requested_contexts = _contexts(datasets)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    tls_args = None if ssl_context is None else (ssl_context, host)
    try:
        assoc = ae.associate(host, port, ae_title=ae_title, tls_args=tls_args)
    except ssl.SSLError as exc:  # pynetdicom lets some handshake errors through
        raise NodeError(f"TLS with {ae_title}@{host}:{port} failed: {exc}") from None
    if not assoc.is_established:
        hint = "; over TLS: check the certificates and the CA on both sides" if ssl_context else ""
        raise NodeError(f"association with {ae_title}@{host}:{port} was not established "
                        f"({'rejected' if assoc.is_rejected else 'aborted or unreachable'}{hint})")
    statuses: list[int | None] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else None)
    finally:
        assoc.release()
    return statuses


def parse_destination(text: str) -> tuple[str, str, int]:
    """``AET@HOST:PORT`` into its parts, with a message that says what is expected."""
    try:
        ae_title, rest = text.split("@", 1)
        host, port = rest.rsplit(":", 1)
        return ae_title, host, int(port)
    except ValueError:
        raise NodeError(f"destination {text!r} is not AET@HOST:PORT (e.g. SPINENODE@127.0.0.1:11112)") from None
