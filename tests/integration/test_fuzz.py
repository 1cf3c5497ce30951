"""Fuzzing the SCP over real associations: thousands of mutated instances, bounded in count and
time. Every answer must be a status the node documents (or none, when the sending library itself
refuses the case), the node must keep answering, and nothing may be written outside its folders.

The bytes after the File Meta Information are sent exactly as mutated (pynetdicom's chunked
file sending), so the node sees truncated, bit-flipped and length-corrupted encodings as well
as well-formed datasets with hostile values (path-like UIDs, zero-sized and huge images, wrong
SOP classes, broken geometry).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context

from dicomnode.handlers import (
    CANNOT_UNDERSTAND,
    INVALID_UID,
    OUT_OF_RESOURCES_DATABASE,
    OUT_OF_RESOURCES_DISK,
    OUT_OF_RESOURCES_WRITE,
    SOP_CLASS_MISMATCH,
    SUCCESS,
)
from dicomnode.node import Node
from tests.mutations import bytes_mutation, encode, split, structured

CASES = 2000
TIME_LIMIT_S = 150
DOCUMENTED = {SUCCESS, OUT_OF_RESOURCES_DISK, OUT_OF_RESOURCES_WRITE, OUT_OF_RESOURCES_DATABASE, SOP_CLASS_MISMATCH,
              CANNOT_UNDERSTAND, INVALID_UID}
MR_SOP = "1.2.840.10008.5.1.4.1.1.4"


def make_cases(base: list[Dataset], rng: random.Random, count: int, folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for k in range(count):
        ds = rng.choice(base)
        if rng.random() < 0.5:
            try:
                raw = encode(structured(ds, rng))
            except Exception:  # noqa: BLE001 - pydicom refused to write this mutation: use the original
                raw = encode(ds)
        else:
            meta, body = split(encode(ds))
            raw = meta + bytes_mutation(body, rng)
        path = folder / f"case{k:05d}.dcm"
        path.write_bytes(raw)
        paths.append(path)
    return paths


class Sender:
    """One association reused while it lasts; a new one after the node aborts it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ae = AE(ae_title="FUZZER")
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 15
        self.ae.requested_contexts = [build_context(MR_SOP, ["1.2.840.10008.1.2.1"]),
                                      build_context("1.2.840.10008.1.1")]
        self.assoc = None
        self.associations = 0

    def _ensure(self) -> None:
        if self.assoc is None or not self.assoc.is_established:
            self.assoc = self.ae.associate("127.0.0.1", self.port, ae_title="SPINENODE")
            self.associations += 1
            assert self.assoc.is_established, "the node stopped accepting associations"

    def store(self, path: Path) -> int | None | str:
        self._ensure()
        assert self.assoc is not None
        try:
            rsp = self.assoc.send_c_store(path)
        except (ValueError, AttributeError, KeyError, TypeError, OSError) as exc:
            return f"not sent: {type(exc).__name__}"  # pynetdicom refused to send this file
        return int(rsp.Status) if "Status" in rsp else None

    def echo(self) -> int:
        self._ensure()
        assert self.assoc is not None
        return int(self.assoc.send_c_echo().Status)

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


def test_thousands_of_mutated_instances_never_crash_the_node(node_factory: Callable[..., Node], series_files,  # noqa: ANN001
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the mutated bytes as they are
    node = node_factory(worker={"workers": 0})
    base = [pydicom.dcmread(p) for p in series_files(103)[:4]]
    cases = make_cases(base, random.Random(20261124), CASES, tmp_path / "cases")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    sender = Sender(node.port)
    outcomes: Counter = Counter()
    started = time.monotonic()
    try:
        for path in cases:
            if time.monotonic() - started > TIME_LIMIT_S:
                break
            outcomes[sender.store(path)] += 1
        assert sender.echo() == SUCCESS  # still answering
        good = sender.store(series_files(101)[0])
        assert good == SUCCESS  # and still storing
    finally:
        sender.close()
    ran = sum(outcomes.values())
    summary = ", ".join(f"{k if isinstance(k, str) or k is None else hex(k)}: {v}" for k, v in outcomes.most_common())
    print(f"\nfuzz: {ran} cases in {time.monotonic() - started:.0f} s over {sender.associations} associations; "
          f"{summary}")
    assert ran >= 1000, f"only {ran} cases ran within {TIME_LIMIT_S} s"
    statuses = {k for k in outcomes if isinstance(k, int)}
    assert statuses <= DOCUMENTED, statuses - DOCUMENTED
    assert outcomes[None] <= ran // 100, "too many associations ended without a response"
    assert {CANNOT_UNDERSTAND, INVALID_UID} <= statuses  # the mutations reached the checks
    data = node.cfg.data_dir
    top = {p.relative_to(data).parts[0] for p in data.rglob("*") if p.is_file()}
    assert top <= {"instances", "conflicts", "logs", "run", "spinenode.db", "spinenode.db-wal", "spinenode.db-shm"}, top
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert all(data in p.parents for p in after - before), "a file was written outside the node's folder"
    assert not any(p.name in ("passwd", "x") for p in after)
