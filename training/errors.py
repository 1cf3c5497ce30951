"""Training's exceptions: one root, specific subclasses whose docstring is the default message.

The CLI turns a :class:`TrainingError` into a one-line message and exit status 2; library code
never raises ``SystemExit``.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Training or evaluation could not run."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class TrainingDataError(TrainingError, ValueError):
    """The training data are missing, too few or not valid."""


class TooFewStudiesError(TrainingDataError):
    """Too few studies of each class for the number of cross-validation folds."""


class CheckpointMismatchError(TrainingError):
    """The checkpoint was made for another training schedule."""

