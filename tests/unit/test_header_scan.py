"""The receive-time header reader: the same values as pydicom's reader, or ``Unusual`` (and then
pydicom's reader is used), never a different answer."""

from __future__ import annotations

import random
import struct
import warnings
from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from dicomnode import header_scan, storage
from tests.mutations import bytes_mutation, encode, split, structured

WANTED = header_scan.wanted_tags((*storage.INSTANCE_ATTRS, *storage.SERIES_ATTRS))


def _encoded(ds: Dataset, implicit_vr: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit_vr, True
    write_dataset(fp, ds)
    return fp.getvalue()


def _pydicom_values(stream: bytes, implicit_vr: bool) -> dict[str, Any]:
    ds = read_dataset(BytesIO(stream), implicit_vr, True, stop_when=lambda tag, *_: tag >= 0x7FE00000)
    return {keyword: ds.get(keyword) for keyword in WANTED.values() if keyword in ds}


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _header(undefined_lengths: bool) -> Dataset:
    """An MR header with sequences (nested, holding attributes the reader must not take from them)
    before and between the wanted attributes, and text in UTF-8."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.Modality = "MR"
    inner = _item(SOPInstanceUID="9.9.9", CodeValue="X")
    inner.ConceptCodeSequence = Sequence([_item(CodeValue="Y", SeriesInstanceUID="8.8.8")])
    ds.ReferencedImageSequence = Sequence([inner, _item(ReferencedSOPInstanceUID="7.7")])
    ds.SeriesDescription = "Wirbelsäule t1_vibe KM"
    ds.ContrastBolusAgent = "Gadobutrol"
    ds.ScanningSequence = ["GR"]
    ds.SequenceVariant = ["SP", "SS"]
    ds.MRAcquisitionType = "3D"
    ds.SequenceName = "*fl3d1"
    ds.SliceThickness = "3.0"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = "7"
    ds.ImagePositionPatient = ["-120.5", "-99.25", "33"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0.9848", "-0.1736"]
    ds.TemporalPositionIdentifier = "2"
    ds.NumberOfTemporalPositions = "5"
    ds.Rows, ds.Columns = 384, 320
    ds.PixelSpacing = ["0.75", "0.75"]
    ds.add_new(0x00091010, "LO", "private text")
    ds.PixelData = b"\0" * 16
    ds["PixelData"].VR = "OW"
    if undefined_lengths:
        for sequence in (ds["ReferencedImageSequence"], inner["ConceptCodeSequence"]):
            sequence.is_undefined_length = True
            for item in sequence.value:
                item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("undefined_lengths", [False, True])
@pytest.mark.parametrize("implicit_vr", [False, True])
def test_the_wanted_values_are_pydicoms_and_only_from_the_top_level(implicit_vr: bool,
                                                                     undefined_lengths: bool) -> None:
    stream = _encoded(_header(undefined_lengths), implicit_vr)
    values = header_scan.read_values(stream, implicit_vr=implicit_vr, wanted=WANTED)
    assert values == _pydicom_values(stream, implicit_vr)
    assert values["SOPInstanceUID"] == "1.2.3.4.5" and values["SeriesInstanceUID"] == "1.2.3.4"
    assert values["SeriesDescription"] == "Wirbelsäule t1_vibe KM"
    assert values["Rows"] == 384 and list(values["SequenceVariant"]) == ["SP", "SS"]
    assert set(values) == set(WANTED.values())


def test_latin_1_text_is_decoded_in_the_data_sets_character_set() -> None:
    ds = _header(False)
    ds.SpecificCharacterSet = "ISO_IR 100"
    stream = _encoded(ds, False)
    assert header_scan.read_values(stream, implicit_vr=False, wanted=WANTED)["SeriesDescription"] == \
        "Wirbelsäule t1_vibe KM"


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"SQ", b"UN", b"OB"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _undefined(group: int, element: int, vr: bytes, items: list[bytes]) -> bytes:
    """An undefined-length element of items with undefined lengths (explicit VR header)."""
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                    for item in items)
    return struct.pack("<HH2sHI", group, element, vr, 0, 0xFFFFFFFF) + body + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


UID_ELEMENT = _element(0x0008, 0x0018, b"UI", b"1.2.3\0")


def test_an_undefined_length_un_element_is_stepped_over_as_implicit_vr() -> None:
    """PS3.5 6.2.2: the value of an undefined-length UN is encoded in implicit VR."""
    nested = struct.pack("<HHI", 0x0020, 0x000E, 6) + b"6.6.6\0"  # implicit VR inside: not a wanted top-level value
    stream = (_element(0x0008, 0x0018, b"UI", b"1.2.3\0") + _undefined(0x0009, 0x1001, b"UN", [nested])
              + _element(0x0020, 0x000E, b"UI", b"1.2.4\0"))
    values = header_scan.read_values(stream, implicit_vr=False, wanted=WANTED)
    assert values == {"SOPInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.4"} == _pydicom_values(stream, False)


@pytest.mark.parametrize("after", [b"\xff" * 40, b"\0" * 40])
def test_the_walk_ends_at_the_pixel_data_group_whatever_follows(after: bytes) -> None:
    stream = _element(0x0008, 0x0018, b"UI", b"1.2.3\0") + _element(0x7FE0, 0x0000, b"UL", b"\x10\0\0\0") + after
    assert header_scan.read_values(stream, implicit_vr=False, wanted=WANTED) == {"SOPInstanceUID": "1.2.3"}


def test_wanted_tags_maps_each_tag_to_its_keyword_with_the_character_set() -> None:
    assert header_scan.wanted_tags(["Rows"]) == {0x00080005: "SpecificCharacterSet", 0x00280010: "Rows"}
    with pytest.raises(ValueError, match=r"^Bogus is not a DICOM keyword$"):
        header_scan.wanted_tags(["Rows", "Bogus"])


def test_the_vr_in_the_stream_is_the_one_converted() -> None:
    """Rows written as SS (a sender's mistake pydicom honours): -1, not the dictionary's US 65535."""
    stream = UID_ELEMENT + _element(0x0028, 0x0010, b"SS", b"\xff\xff")
    values = header_scan.read_values(stream, implicit_vr=False, wanted=WANTED)
    assert values == _pydicom_values(stream, False) and values["Rows"] == -1


def test_a_data_set_may_end_with_an_undefined_length_sequence() -> None:
    """No pixel data (an SR, say): the sequence's delimiter is the last 8 bytes."""
    stream = UID_ELEMENT + _undefined(0x0008, 0x1140, b"SQ", [UID_ELEMENT])
    assert header_scan.read_values(stream, implicit_vr=False, wanted=WANTED) == {"SOPInstanceUID": "1.2.3"}


def test_items_of_defined_length_in_an_undefined_length_sequence_are_stepped_over() -> None:
    item = _element(0x0008, 0x1150, b"UI", b"1.2.840.10008.5.1.4.1.1.4\0")
    items = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
                     for body in (item, item + _element(0x0020, 0x000E, b"UI", b"9.9\0")))
    sequence = (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + items
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    stream = sequence + _element(0x0020, 0x000E, b"UI", b"1.2.4\0")
    values = header_scan.read_values(stream, implicit_vr=False, wanted=WANTED)
    assert values == {"SeriesInstanceUID": "1.2.4"} == _pydicom_values(stream, False)


def test_an_empty_data_set_has_no_values() -> None:
    assert header_scan.read_values(b"", implicit_vr=True, wanted=WANTED) == {}


def _nested(depth: int) -> bytes:
    """Sequences of undefined length inside each other, ``depth`` deep, then a wanted element."""
    inner = b""
    for _ in range(depth):
        inner = _undefined(0x0008, 0x1140, b"SQ", [inner])
    return inner + _element(0x0008, 0x0018, b"UI", b"1.2.3\0")


def test_sequences_nested_to_the_limit_are_read_and_deeper_ones_are_unusual() -> None:
    stream = _nested(header_scan.MAX_DEPTH)
    assert header_scan.read_values(stream, implicit_vr=False, wanted=WANTED) == {"SOPInstanceUID": "1.2.3"}
    with pytest.raises(header_scan.Unusual, match="too deep"):
        header_scan.read_values(_nested(header_scan.MAX_DEPTH + 1), implicit_vr=False, wanted=WANTED)


UNUSUAL = {
    "implicit VR bytes read as explicit": (struct.pack("<HHI", 0x0008, 0x0018, 6) + b"1.2.3\0" * 3, False,
                                           "encoding differs"),
    "explicit VR bytes read as implicit": (UID_ELEMENT, True, "encoding differs"),
    "a VR that is not two capital letters": (UID_ELEMENT + _element(0x0008, 0x0060, b"m1", b"MR"), False,
                                             "not an explicit VR"),
    "a cut element header": (UID_ELEMENT + b"\x08\x00\x60\x00CS", False, "past the end"),
    "a cut long element header": (UID_ELEMENT + b"\x08\x00\x60\x00OB\0\0\x02", False, "past the end"),
    "a value longer than the data": (UID_ELEMENT + _element(0x0008, 0x0060, b"CS", b"MR")[:-1], False,
                                     "past the end"),
    "an item at the top level": (UID_ELEMENT + struct.pack("<HHI", 0xFFFE, 0xE000, 0), False, "belongs"),
    "undefined length on a text value": (UID_ELEMENT + struct.pack("<HH2sHI", 0x0008, 0x4000, b"UT", 0, 0xFFFFFFFF)
                                         + b"\xff\xff", False, "undefined length"),
    "an element where an item belongs": (_undefined(0x0008, 0x1140, b"SQ", [])[:-8] + UID_ELEMENT, False,
                                         "not an item"),
    "a sequence without its delimiter": (_undefined(0x0008, 0x1140, b"SQ", [])[:-8], False, "without its delimiter"),
    "an item without its delimiter": (_undefined(0x0008, 0x1140, b"SQ", [UID_ELEMENT])[:-16], False,
                                      "item without"),
}


@pytest.mark.parametrize("case", UNUSUAL)
def test_unexpected_bytes_are_unusual_and_left_to_pydicom(case: str) -> None:
    stream, implicit_vr, message = UNUSUAL[case]
    with pytest.raises(header_scan.Unusual, match=message):
        header_scan.read_values(stream, implicit_vr=implicit_vr, wanted=WANTED)


def test_a_sender_that_writes_explicit_vr_under_an_implicit_transfer_syntax_is_still_read() -> None:
    """pydicom's reader notices and switches; the node's header reader hands such data to it."""
    stream = _encoded(_header(False), implicit_vr=False)
    with pytest.warns(UserWarning, match="Expected implicit VR, but found explicit VR"):
        header = storage.read_header(stream, ImplicitVRLittleEndian)
    assert storage.summarise(header).sop_instance_uid == "1.2.3.4.5"


def _outcome(read: Any, *stream: bytes) -> tuple[str, Any]:
    try:
        return "read", storage.summarise(read(*stream))
    except Exception as exc:  # noqa: BLE001 - the handler answers 0xC210/0xC211 for any of these
        return "refused", type(exc).__name__


def test_on_thousands_of_mutated_instances_the_fast_reader_agrees_with_pydicoms(series_files) -> None:  # noqa: ANN001
    """Well-formed data sets with hostile values and byte-level damage: wherever the walk gives an
    answer, the summary (or the error) is pydicom's; it gives one for nearly all of them."""
    base = [pydicom.dcmread(path) for path in series_files(103)[:4]]
    rng = random.Random(20261130)
    walked = 0
    cases = 1500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the damage it reads through
        for _ in range(cases):
            ds = rng.choice(base)
            try:
                raw = encode(structured(ds, rng)) if rng.random() < 0.5 else None
            except Exception:  # noqa: BLE001 - pydicom would not write this mutation
                raw = None
            if raw is None:
                meta, body = split(encode(ds))
                raw = meta + bytes_mutation(body, rng)
            stream = split(raw)[1]
            try:
                values = header_scan.read_values(stream, implicit_vr=False, wanted=WANTED)
            except header_scan.Unusual:
                continue
            except Exception as exc:  # noqa: BLE001 - a value pydicom cannot convert: pydicom's reader fails too
                assert _outcome(lambda s: _pydicom_values(s, False), stream)[0] == "refused", type(exc).__name__
                walked += 1
                continue
            walked += 1
            assert _outcome(values.copy) == _outcome(lambda s: _pydicom_values(s, False), stream)
    assert walked >= 0.9 * cases
