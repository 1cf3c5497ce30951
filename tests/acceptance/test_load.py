"""Several senders at once into `spinenode serve` (a subprocess): nothing lost or duplicated.
The senders are dcmtk `storescu` processes, one association per study. The full-size run
(8 senders x 25 studies, with the single-sender rate for comparison) is `python -m bench.load`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import lossless, run_load

pytestmark = pytest.mark.acceptance


def test_eight_senders_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    r = run_load(tmp_path, senders=8, studies=3, timeout_s=60)
    assert r["refused"] == 0
    assert r["acknowledged"] == r["instances_sent"] == 8 * 3 * 12
    assert r["database_rows"] == r["distinct_in_database"] == r["on_disk"] == r["acknowledged"]
    assert r["series_with_a_job"] == 24 and r["series_with_two_jobs"] == 0
    assert lossless(r)
