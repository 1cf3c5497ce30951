"""Mutation score per module: mutmut mutates the modules ``pyproject.toml`` names
(``[tool.mutmut] only_mutate``) against the tests listed beside them, then the score of each
module is printed, killed / all mutants.

    .venv/bin/python scripts/mutation_score.py                 # run mutmut (resumes), then the table
    .venv/bin/python scripts/mutation_score.py --no-run        # the table of the last run only
    .venv/bin/python scripts/mutation_score.py --fail-under 90 # exit 1 if a module scores less

Slow (tens of minutes on 2 cores), hence not in CI. ``mutants/`` is mutmut's scratch copy; delete
it to start afresh after the code changed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\s*(?P<name>[\w.ǁ]+)__mutmut_\d+: (?P<status>[\w ]+?)\s*$")


def scores(results: str) -> dict[str, Counter[str]]:
    """Status counts per module from ``mutmut results --all true`` (mutant names are
    ``package.module.function__mutmut_N``, methods ``package.module.xǁClassǁmethod__mutmut_N``)."""
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in results.splitlines():
        match = LINE.match(line)
        if match:
            per_module[match["name"].rsplit(".", 1)[0]][match["status"]] += 1
    return dict(per_module)


def table(per_module: dict[str, Counter[str]]) -> tuple[list[str], float]:
    """Markdown rows and the lowest score (percent of mutants killed) among the modules."""
    rows = ["| module | killed | survived | other | score |", "| --- | --- | --- | --- | --- |"]
    lowest = 100.0
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        score = 100.0 * counts["killed"] / total
        lowest = min(lowest, score)
        other = total - counts["killed"] - counts["survived"]
        rows.append(f"| {module} | {counts['killed']} | {counts['survived']} | {other} | {score:.1f} % |")
    return rows, lowest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-run", action="store_true", help="only print the scores of the last run")
    parser.add_argument("--max-children", type=int, default=2, help="mutmut's parallel test processes")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 if a module's score is lower")
    args = parser.parse_args(argv)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    if not args.no_run:
        subprocess.run([mutmut, "run", "--max-children", str(args.max_children)], cwd=REPO, check=False)
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=REPO, capture_output=True, text=True, check=True)
    per_module = scores(out.stdout)
    if not per_module:
        print("no mutants found: run without --no-run first", file=sys.stderr)
        return 1
    rows, lowest = table(per_module)
    print("\n".join(rows))
    return 1 if lowest < args.fail_under else 0


if __name__ == "__main__":
    raise SystemExit(main())
