"""The README's contract: exactly two set-up commands first; CI runs the second one."""

from __future__ import annotations

from tests.conftest import REPO


def _commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    ")][:2]


def test_readme_starts_with_the_two_setup_commands() -> None:
    run, test = _commands()
    assert run == "scripts/install.sh && .venv/bin/spinenode serve"
    assert test.startswith("scripts/install.sh --test && ")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci
