from __future__ import annotations

import pytest

from dicomnode.retry import RetryPolicy


def test_backoff_doubles_then_caps() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=10, max_s=60)
    assert [policy.next_wait(a) for a in range(1, 8)] == [10, 20, 40, 60, 60, 60, 60]


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=1, max_s=10)
    assert policy.next_wait(2) == 2
    assert policy.next_wait(3) is None
    assert policy.next_wait(4) is None


def test_single_attempt_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).next_wait(1) is None


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_s": 0}, {"base_s": 10, "max_s": 5}])
def test_invalid_policy_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().next_wait(0)
