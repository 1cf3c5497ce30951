"""DICOMweb STOW-RS: the results sent to an archive that takes HTTP instead of C-STORE.

One request per batch (PS3.18 section 10.5): ``POST {url}/studies`` with a
``multipart/related; type="application/dicom"`` body, one part per file as stored (its File
Meta Information included), ``Accept: application/dicom+json``. The answer maps onto the same
per-instance statuses as C-STORE, so the sender's retry and dead-letter rules apply unchanged:

* an instance in the response's Referenced SOP Sequence (0008,1199) is stored: 0x0000, or 0xB000
  when the item carries a Warning Reason (0008,1196);
* an instance in the Failed SOP Sequence (0008,1198) failed with its Failure Reason (0008,1197),
  a DIMSE status (0xC000 when the archive gave none);
* HTTP 200/202/409 with no mention of an instance: no status (retried);
* any other HTTP status, or no connection: :class:`~dicomnode.errors.NodeError` for the whole batch.

HTTP basic authentication with the destination's ``username`` and ``password``; for ``https://``
URLs the server's certificate is verified (``tls_ca_certificates``, else the system's CAs).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicomnode.config import Destination
from dicomnode.errors import NodeError
from dicomnode.scu import SendResult

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
PROCESSING_FAILURE = 0xC000
WARNING = 0xB000


def multipart_body(parts: Sequence[bytes]) -> tuple[bytes, str]:
    """The request body and its Content-Type for these DICOM files."""
    boundary = secrets.token_hex(16)
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _value(item: dict[str, Any], tag: str) -> Any:  # noqa: ANN401 - a DICOM JSON value
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def statuses(response: dict[str, Any]) -> dict[str, int]:
    """SOP Instance UID -> status, from a STOW-RS response data set in DICOM JSON."""
    out: dict[str, int] = {}
    for item in (response.get(REFERENCED_SOP_SEQUENCE) or {}).get("Value") or []:
        uid = _value(item, REFERENCED_SOP_INSTANCE_UID)
        if uid:
            out[str(uid)] = WARNING if _value(item, WARNING_REASON) is not None else 0x0000
    for item in (response.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or []:
        uid = _value(item, REFERENCED_SOP_INSTANCE_UID)
        if uid:
            reason = _value(item, FAILURE_REASON)
            out[str(uid)] = int(reason) if reason is not None else PROCESSING_FAILURE
    return out


def _request(dest: Destination, body: bytes, content_type: str) -> urllib.request.Request:
    request = urllib.request.Request(f"{dest.url.rstrip('/')}/studies", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    request.add_header("Accept", "application/dicom+json")
    if dest.username:
        token = base64.b64encode(f"{dest.username}:{dest.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _context(dest: Destination) -> ssl.SSLContext | None:
    if not dest.url.startswith("https://"):
        return None
    return ssl.create_default_context(cafile=dest.tls_ca_certificates or None)


def send_stow(paths: Sequence[Path], uids: Sequence[str], dest: Destination, *,
              timeout: float = 60) -> list[SendResult]:
    """STOW-RS every file in one request; ``uids``: their SOP Instance UIDs (as the outbox recorded
    them), by which the response's statuses are matched. One result per file, in order (see the
    module docstring)."""
    if len(uids) != len(paths):
        raise ValueError(f"{len(paths)} files but {len(uids)} SOP Instance UIDs")
    data = [Path(p).read_bytes() for p in paths]
    body, content_type = multipart_body(data)
    try:
        with urllib.request.urlopen(_request(dest, body, content_type), timeout=timeout,
                                    context=_context(dest)) as response:
            code, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        code, payload = error.code, error.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NodeError(f"STOW-RS to {dest.url}: no connection ({reason})") from exc
    if code not in (200, 202, 409):
        raise NodeError(f"STOW-RS to {dest.url}: HTTP {code} {payload[:200].decode(errors='replace')}")
    try:
        found = statuses(json.loads(payload) if payload.strip() else {})
    except (ValueError, AttributeError) as exc:
        raise NodeError(f"STOW-RS to {dest.url}: HTTP {code} with an unreadable response") from exc
    return [SendResult(Path(p), found.get(uid)) for p, uid in zip(paths, uids, strict=True)]
