"""Mutations of DICOM instances, shared by the fuzz test over the network and the header reader's
parity test: well-formed data sets with hostile values, and byte-level damage to the encoding."""

from __future__ import annotations

import copy
import io
import random

from pydicom.dataset import Dataset

HOSTILE_UIDS = ("../../../etc/passwd", "", "1.2.3/../../x", "1" * 80, "1..2", "1.2.3\\4", "1.02.3", " ", "1.2.3\x00",
                "/abs/path", "C:\\win", "..")


def encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def split(raw: bytes) -> tuple[bytes, bytes]:
    """File bytes -> (preamble + file meta, dataset body)."""
    meta_len = int.from_bytes(raw[140:144], "little")  # (0002,0000) group length value, after the 132-byte header
    end = 144 + meta_len
    return raw[:end], raw[end:]


def structured(ds: Dataset, rng: random.Random) -> Dataset:
    ds = copy.deepcopy(ds)  # a shallow copy shares data elements with the base
    choice = rng.randrange(9)
    if choice == 0:
        attr = rng.choice(["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
        value = rng.choice(HOSTILE_UIDS)
        setattr(ds, attr, value)
        if attr == "SOPInstanceUID" and rng.random() < 0.5:
            ds.file_meta.MediaStorageSOPInstanceUID = value
    elif choice == 1:
        ds.Rows, ds.Columns = rng.choice([(0, 0), (0, 256), (65535, 65535), (1, 1), (256, 0)])
    elif choice == 2:
        ds.BitsAllocated = rng.choice([0, 1, 7, 12, 64])
    elif choice == 3:
        if rng.random() < 0.5:
            del ds.PixelData
        else:
            ds.PixelData = b""
    elif choice == 4:
        ds.SOPClassUID = rng.choice(["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.5.1.4.1.1.88.22"])
    elif choice == 5:
        ds.ImageOrientationPatient = rng.choice([[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1e300, 0, 0, 0, 1, 0]])
        ds.PixelSpacing = rng.choice([[0, 0], [-1, 1], [1e-9, 1e9]])
    elif choice == 6:
        for _ in range(rng.randint(1, 6)):
            tags = [e.tag for e in ds if e.tag.group != 0x7FE0]
            del ds[rng.choice(tags)]
    elif choice == 7:
        ds.NumberOfFrames = rng.choice([0, 5, 100000])
    else:
        ds.PatientName = "X" * rng.choice([1, 64, 10000])
        ds.SeriesDescription = rng.choice(["", "\x00\x01\x02", "é" * 200, "VIBE" * 100])
    return ds


def bytes_mutation(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    choice = rng.randrange(5)
    if choice == 0:
        return bytes(data[: rng.randrange(len(data))])  # truncated
    if choice == 1:
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if choice == 2:  # a length field or value turned into 0xFFFFFFFF / 0
        at = rng.randrange(0, min(len(data) - 4, 2000))
        data[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\x00\xe0"])
        return bytes(data)
    if choice == 3:
        at = rng.randrange(len(data))
        return bytes(data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[at:])
    at = rng.randrange(min(len(data), 3000))  # header region scrambled
    data[at:at + 64] = bytes(rng.randrange(256) for _ in range(len(data[at:at + 64])))
    return bytes(data)
