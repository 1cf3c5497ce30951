from __future__ import annotations

import pytest

from dicomnode.retry import RetryPolicy


def test_backoff_doubles_then_caps() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=10, max_s=60)
    assert [policy.next_wait(a) for a in range(1, 8)] == [10, 20, 40, 60, 60, 60, 60]


def test_default_policy_waits_ten_twenty_forty_eighty_then_gives_up() -> None:
    policy = RetryPolicy()
    assert [policy.next_wait(a) for a in range(1, 6)] == [10, 20, 40, 80, None]


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=1, max_s=10)
    assert policy.next_wait(2) == 2
    assert policy.next_wait(3) is None
    assert policy.next_wait(4) is None


def test_single_attempt_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).next_wait(1) is None


def test_equal_base_and_cap_is_a_constant_wait() -> None:
    """``base_s == max_s`` is allowed (the bound is ``base_s <= max_s``): every retry waits the same."""
    policy = RetryPolicy(max_attempts=4, base_s=30, max_s=30)
    assert [policy.next_wait(a) for a in range(1, 5)] == [30, 30, 30, None]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_attempts": 0}, "max_attempts must be >= 1, got 0"),
    ({"max_attempts": -2}, "max_attempts must be >= 1, got -2"),
    ({"base_s": 0}, "need 0 < base_s <= max_s, got base_s=0, max_s=600.0"),
    ({"base_s": -1, "max_s": 5}, "need 0 < base_s <= max_s, got base_s=-1, max_s=5"),
    ({"base_s": 10, "max_s": 5}, "need 0 < base_s <= max_s, got base_s=10, max_s=5"),
])
def test_invalid_policy_is_refused_with_the_offending_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        RetryPolicy(**kwargs)
    assert str(excinfo.value) == message


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_counts_from_one(attempt: int) -> None:
    with pytest.raises(ValueError) as excinfo:
        RetryPolicy().next_wait(attempt)
    assert str(excinfo.value) == f"attempt counts from 1, got {attempt}"
