"""C-STORE as a service user: send files to an AE (``spinenode send``; the outbox sender later)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.presentation import build_context

from dicomnode.errors import NodeError


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
               calling_ae: str = "SPINENODE", timeout: float = 30) -> list[SendResult]:
    """C-STORE every file over one association; one result per file, in order."""
    paths = list(paths)
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.requested_contexts = _contexts(datasets)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        raise NodeError(f"association with {ae_title}@{host}:{port} was not established "
                        f"({'rejected' if assoc.is_rejected else 'aborted or unreachable'})")
    results = []
    try:
        for path, ds in zip(paths, datasets, strict=True):
            status = assoc.send_c_store(ds)
            results.append(SendResult(path, int(status.Status) if "Status" in status else None))
    finally:
        assoc.release()
    return results


def parse_destination(text: str) -> tuple[str, str, int]:
    """``AET@HOST:PORT`` into its parts, with a message that says what is expected."""
    try:
        ae_title, rest = text.split("@", 1)
        host, port = rest.rsplit(":", 1)
        return ae_title, host, int(port)
    except ValueError:
        raise NodeError(f"destination {text!r} is not AET@HOST:PORT (e.g. SPINENODE@127.0.0.1:11112)") from None
