"""The header summary recorded for each received instance, and reading a header from the bytes as received."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian
from pynetdicom.dsutils import encode

from dicomnode import storage
from dicomnode.errors import InvalidUIDError

MR = "1.2.840.10008.5.1.4.1.1.4"


def mr_header() -> Dataset:
    """An MR instance's header with every attribute the summary reads, all values distinct."""
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID = MR
    ds.Modality = "MR"
    ds.SeriesDescription = "t1_vibe_tra_post"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.NumberOfTemporalPositions = 3
    ds.InstanceNumber = 7
    ds.ImagePositionPatient = [-120.0, -110.5, 42.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.9, 0.1]
    ds.PixelSpacing = [0.9, 0.8]
    ds.SliceThickness = 3.5
    ds.TemporalPositionIdentifier = 2
    ds.Rows = 256
    ds.Columns = 192
    return ds


def test_the_summary_holds_every_protocol_relevant_attribute() -> None:
    assert storage.summarise(mr_header()) == storage.HeaderSummary(
        study_uid="1.2.3", series_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5", sop_class_uid=MR,
        series_attrs={"Modality": "MR", "SeriesDescription": "t1_vibe_tra_post",
                      "ImageType": ["ORIGINAL", "PRIMARY", "M"], "NumberOfTemporalPositions": 3},
        instance_number=7, position=[-120.0, -110.5, 42.0], orientation=[1.0, 0.0, 0.0, 0.0, 0.9, 0.1],
        pixel_spacing=[0.9, 0.8], slice_thickness=3.5, temporal_position=2, rows=256, columns=192,
    )


def test_series_attributes_are_plain_text_lists_and_numbers() -> None:
    """Multi-valued attributes become lists of str (stored as JSON), never pydicom objects."""
    attrs = storage.summarise(mr_header()).series_attrs
    assert type(attrs["ImageType"]) is list and all(type(v) is str for v in attrs["ImageType"])
    assert isinstance(attrs["NumberOfTemporalPositions"], int)


def test_absent_optional_attributes_are_none() -> None:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID = "1.2", "1.3", "1.4", MR
    summary = storage.summarise(ds)
    assert summary.series_attrs == {}
    assert (summary.instance_number, summary.position, summary.orientation, summary.pixel_spacing,
            summary.slice_thickness, summary.temporal_position, summary.rows, summary.columns) == (None,) * 8


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"])
def test_a_missing_uid_is_refused_by_name(keyword: str) -> None:
    ds = mr_header()
    delattr(ds, keyword)
    with pytest.raises(InvalidUIDError) as excinfo:
        storage.summarise(ds)
    assert str(excinfo.value) == f"{keyword} None is missing or not a valid UID"


def test_a_position_with_the_wrong_number_of_values_is_none() -> None:
    ds = mr_header()
    ds.ImagePositionPatient = [-120.0, -110.5]
    ds.PixelSpacing = [0.9, 0.8, 0.7]
    summary = storage.summarise(ds)
    assert summary.position is None and summary.pixel_spacing is None


def test_a_single_text_value_is_not_split_into_characters() -> None:
    """PixelSpacing sent with a text VR as "12" is malformed (one value), not the spacing [1, 2]."""
    ds = mr_header()
    del ds.PixelSpacing
    ds.add_new(0x00280030, "LO", "12")
    assert storage.summarise(ds).pixel_spacing is None


def test_non_numeric_values_are_none() -> None:
    ds = mr_header()
    del ds.InstanceNumber, ds.ImageOrientationPatient
    ds.add_new(0x00200013, "LO", "seven")  # InstanceNumber
    ds.add_new(0x00200037, "LO", ["1", "0", "0", "0", "1", "x"])  # ImageOrientationPatient
    summary = storage.summarise(ds)
    assert summary.instance_number is None and summary.orientation is None


def test_the_header_stops_before_the_pixel_data_group() -> None:
    """Nothing of group 7FE0 is read, not even a group length (7FE0,0000) that some senders still
    write, nor whatever follows it (here bytes that are no element at all), by either reader."""
    for transfer_syntax in (ExplicitVRLittleEndian, ExplicitVRBigEndian):
        order = "<" if transfer_syntax.is_little_endian else ">"
        group_length = struct.pack(f"{order}HH2sHI", 0x7FE0, 0x0000, b"UL", 4, 16)
        pixel_data = struct.pack(f"{order}HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 8) + b"\0" * 8
        head = encode(mr_header(), False, transfer_syntax.is_little_endian)
        assert head is not None
        header = storage.read_header(head + group_length + pixel_data + b"\xff" * 7, transfer_syntax)
        assert header["Columns"] == 192 and header["SOPInstanceUID"] == mr_header().SOPInstanceUID
        assert set(header) <= set(storage.INSTANCE_ATTRS) | set(storage.SERIES_ATTRS) | {"SpecificCharacterSet"}
