"""A fast walk over a received data set's elements that keeps only the tags the node records.

pydicom's reader makes a raw element for every attribute before the pixel data (about a hundred
in an MR image) and, in the same pass, decodes nothing; at a receive rate of 100 instances a
second that costs about a millisecond per instance, a tenth of the time the DICOM library itself
takes to receive one. This module steps from element to element by their lengths (struct
unpacking, no objects) and hands only the wanted ones to pydicom as raw elements, so their values
are still converted by pydicom (character sets, VRs, multi-values) exactly as before.

It reads little-endian data sets (explicit or implicit VR): sequences of undefined length are
stepped over item by item, the contents of an undefined-length UN as implicit VR (PS3.5 6.2.2).
Anything else, or any byte pattern it does not expect (a VR that is not two capital letters, a
length past the end, an item tag where an element should be, nesting deeper than
``MAX_DEPTH``), raises ``Unusual``: the caller then reads the data set with pydicom's own reader,
which either makes sense of it or raises the decode error the sender is told about.
"""

from __future__ import annotations

import struct
from collections.abc import Container, Iterable
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag

MAX_DEPTH = 16  # nested sequences; deeper than any real header, and bounded against crafted data
PIXEL_DATA_GROUP = 0x7FE00000  # Float Pixel Data, Pixel Data and what follows: never read
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 table 7.1-1)
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))
_TAG_LENGTH = struct.Struct("<HHI")  # implicit VR, items and delimiters: group, element, 4-byte length
_TAG_VR_LENGTH = struct.Struct("<HH2sH")  # explicit VR, short form
_LENGTH = struct.Struct("<I")


class Unusual(Exception):  # noqa: N818 - not an error: the caller falls back to pydicom's reader
    """The bytes are not the plain little-endian encoding this walk reads."""


def wanted_tags(keywords: Iterable[str]) -> dict[int, str]:
    """Tag -> keyword for ``keywords`` (dictionary keywords) and Specific Character Set."""
    tags: dict[int, str] = {_CHARSET: "SpecificCharacterSet"}
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} is not a DICOM keyword")
        tags[int(tag)] = keyword
    return tags


def read_values(stream: bytes, *, implicit_vr: bool, wanted: dict[int, str]) -> dict[str, Any]:
    """Keyword -> value of the top-level elements of ``stream`` whose tags are in ``wanted`` (tag ->
    keyword, made by ``wanted_tags``), up to the pixel data; values as pydicom converts them
    (``Dataset.get`` gives the same), text decoded in the data set's Specific Character Set.
    Raises ``Unusual``."""
    if len(stream) >= 6 and _looks_explicit(stream) == implicit_vr:
        raise Unusual("the VR encoding differs from the transfer syntax")  # pydicom's reader switches
    found: dict[int, RawDataElement] = {}
    _walk(stream, 0, implicit_vr, found, wanted, depth=0)
    encoding: str | list[str] = default_encoding  # pydicom's, when the data set names none
    if _CHARSET in found:
        encoding = convert_encodings(convert_raw_data_element(found[_CHARSET]).value)
    return {wanted[tag]: convert_raw_data_element(raw, encoding=encoding).value for tag, raw in found.items()}


def _looks_explicit(stream: bytes) -> bool:
    """Whether the first element's bytes 4-5 are capital letters, as pydicom's reader tells them."""
    return 0x40 < stream[4] < 0x5B and 0x40 < stream[5] < 0x5B


def _walk(buf: bytes, pos: int, implicit_vr: bool, found: dict[int, RawDataElement] | None,
          wanted: Container[int], depth: int) -> int:
    """Step over a data set's elements from ``pos``: the top level (``found`` given, the ``wanted``
    ones kept in it) until the pixel data or the end; an item's (``found`` None, nothing kept)
    until its Item Delimitation Item. Returns the position after it."""
    end_of_buffer = len(buf)
    while pos < end_of_buffer:
        if pos + 8 > end_of_buffer:
            raise Unusual("an element header runs past the end")
        group, element, length = _TAG_LENGTH.unpack_from(buf, pos)
        tag = group << 16 | element
        if found is None and tag == _ITEM_END:
            return pos + 8
        if group == 0xFFFE:
            raise Unusual("an item or delimiter where an element belongs")
        if found is not None and tag >= PIXEL_DATA_GROUP:
            return pos
        vr, start, length = _vr_and_length(buf, pos, implicit_vr, length)
        if length == _UNDEFINED:
            if not (implicit_vr or vr in (b"SQ", b"UN")):
                raise Unusual("undefined length outside a sequence")
            pos = _skip_sequence(buf, start, implicit_vr or vr == b"UN", depth + 1)
            continue
        pos = start + length
        if pos > end_of_buffer:
            raise Unusual("a value runs past the end")
        if found is not None and tag in wanted:
            found[tag] = RawDataElement(BaseTag(tag), None if vr is None else vr.decode("ascii"), length,
                                        buf[start:pos], start, implicit_vr, True)
    if found is None:
        raise Unusual("an item without its delimiter")
    return pos


def _vr_and_length(buf: bytes, pos: int, implicit_vr: bool, length: int) -> tuple[bytes | None, int, int]:
    """The VR (None for implicit VR), where the value starts and its length."""
    if implicit_vr:
        return None, pos + 8, length
    _, _, vr, short_length = _TAG_VR_LENGTH.unpack_from(buf, pos)
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise Unusual("an element header runs past the end")
        return vr, pos + 12, _LENGTH.unpack_from(buf, pos + 8)[0]
    if not (vr.isalpha() and vr.isupper()):
        raise Unusual("not an explicit VR")
    return vr, pos + 8, short_length


def _skip_sequence(buf: bytes, pos: int, implicit_vr: bool, depth: int) -> int:
    """Step over the items of an undefined-length sequence; returns the position after its
    Sequence Delimitation Item."""
    if depth > MAX_DEPTH:
        raise Unusual("sequences nested too deep")
    while pos + 8 <= len(buf):
        group, element, length = _TAG_LENGTH.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise Unusual("not an item inside a sequence")
        if length == _UNDEFINED:
            pos = _walk(buf, pos + 8, implicit_vr, None, (), depth)
        else:
            pos += 8 + length
    raise Unusual("a sequence without its delimiter")
