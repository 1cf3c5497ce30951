"""Synthetic contrast-enhanced spine MRI phantom (the specification is docs/phantom.md).

Two layers: :func:`generate_study` returns volumes and masks in memory (fast, for training),
and :func:`write_study` turns one into what a scanner and a labeller would send: an MR series,
a DICOM Segmentation of the ground truth and a JSON file.
"""

from __future__ import annotations

from phantom.generator import PhantomStudy, generate_study
from phantom.params import LABEL_NAMES, MATRICES, StudyParams, sample_params
from phantom.writer import TRANSFER_SYNTAXES, write_study

__all__ = [
    "LABEL_NAMES",
    "MATRICES",
    "PhantomStudy",
    "StudyParams",
    "TRANSFER_SYNTAXES",
    "generate_study",
    "sample_params",
    "write_study",
]
