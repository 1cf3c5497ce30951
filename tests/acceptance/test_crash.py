"""kill -9 of `spinenode serve` in the middle of an analysis, with the shipped 300 s lease: the
restarted node recognises its dead predecessor's lease and runs the job again at once, and the
study gets exactly one set of results. N random trials are `python -m bench.crash`; this is the
deterministic one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash import run_trial

pytestmark = pytest.mark.acceptance


def test_kill_9_while_processing_then_restart_delivers_once(tmp_path: Path, phantom_dir: Path) -> None:
    folder = tmp_path / "trial"
    folder.mkdir()
    t = run_trial(folder, [phantom_dir / "study_101", phantom_dir / "study_102"], kill_after_s=0.3,
                  when_running=True, timeout_s=120, lease_s=300.0)
    assert "processing" in t.killed_while, t.killed_while
    assert len(t.acknowledged) == t.sent == 24 and t.lost == 0
    assert t.stored_on_disk == t.in_database == 24
    assert t.complete_with_results == 2 and t.extra_results == 0
    assert t.stuck_jobs == 0
    assert t.restart_to_results_s is not None and t.restart_to_results_s < 60  # not the lease's 300 s
