"""Deterministic DICOM UIDs.

Derived UIDs use the ``2.25`` root (ISO/IEC 9834-8: a UUID written as an integer), so no
organisation root is needed. The UUID is the first 128 bits of a SHA-256 over the inputs with
the version/variant bits of a name-based UUID, so the same inputs always give the same UID
and different inputs practically never collide.
"""

from __future__ import annotations

import hashlib
import uuid


def derived_uid(*parts: object) -> str:
    """A UID that depends only on ``parts`` (e.g. namespace, source UID, model version)."""
    if not parts:
        raise ValueError("derived_uid needs at least one part to derive from")
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    value = uuid.UUID(bytes=digest[:16], version=5)  # name-based layout (RFC 4122 section 4.3)
    return f"2.25.{value.int}"


# identifies files written by this project (File Meta Information)
IMPLEMENTATION_CLASS_UID = derived_uid("spinenode", "implementation-class", 1)
IMPLEMENTATION_VERSION_NAME = "SPINENODE_01"
