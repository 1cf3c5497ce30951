"""The per-module mutation score that scripts/mutation_score.py prints from mutmut's results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation_score.py"
spec = importlib.util.spec_from_file_location("mutation_score", SCRIPT)
assert spec is not None and spec.loader is not None
mutation_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_score)

RESULTS = """\
    dicomnode.retry.x_next_wait__mutmut_1: killed
    dicomnode.retry.x_next_wait__mutmut_2: survived
    dicomnode.recorder.xǁRecorderǁstore__mutmut_3: killed
    dicomnode.recorder.xǁRecorderǁstore__mutmut_4: killed
    dicomnode.recorder.xǁRecorderǁstore__mutmut_5: no tests
    dicomnode.retry.x_next_wait__mutmut_3: killed
"""


def test_scores_are_counted_per_module_with_methods_under_their_module() -> None:
    per_module = mutation_score.scores(RESULTS)
    assert per_module == {"dicomnode.retry": {"killed": 2, "survived": 1},
                          "dicomnode.recorder": {"killed": 2, "no tests": 1}}
    rows, lowest = mutation_score.table(per_module)
    assert rows[2] == "| dicomnode.recorder | 2 | 0 | 1 | 66.7 % |"
    assert rows[3] == "| dicomnode.retry | 2 | 1 | 0 | 66.7 % |"
    assert lowest == 200 / 3
