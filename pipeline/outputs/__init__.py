"""DICOM objects the node sends back: SEG, TID 1500 SR, key image, abstention SR (no networking)."""

from __future__ import annotations

from pipeline.outputs.abstention import build_abstention_sr
from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.key_image import build_key_image
from pipeline.outputs.seg import build_seg
from pipeline.outputs.sr import build_measurement_sr

__all__ = ["ResultIdentity", "build_abstention_sr", "build_key_image", "build_measurement_sr", "build_seg"]
