"""A 3D Inception-ResNet-v2-style classifier with squeeze-and-excitation (paper section 2.5,
Figs. 5-7), sized for a 12-slice cube around a lesion.

Input (N, C, 12, H, W): C channels = the post-contrast image relative to marrow, then the peak,
inflow and outflow maps (zeros where a single-phase series has none); H = W = 64 (1 mm pixels).
Every stride and pooling acts in-plane only ((1, k, k) kernels), so the slice axis never
collapses: the 12 slices survive to the global pooling. Output: logits over {primary,
metastasis} (``predict_proba`` applies the softmax).

Structure as Inception-ResNet-v2, with the widths divided by ``width`` (4 by default, for a CPU):
stem with factorised 1x7 / 7x1 convolutions (Fig. 6), Inception-ResNet-A blocks, reduction A,
Inception-ResNet-B blocks (1x7, 7x1), reduction B, Inception-ResNet-C blocks (1x3, 3x1); each
residual block is followed by squeeze-and-excitation channel attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from models import weights


def conv(cin: int, cout: int, k: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
         pad: tuple[int, int, int] | None = None) -> nn.Sequential:
    padding = (k[0] // 2, k[1] // 2, k[2] // 2) if pad is None else pad
    return nn.Sequential(nn.Conv3d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


IN_PLANE_2 = (1, 2, 2)


class SqueezeExcitation(nn.Module):
    """Global average pooling per channel, a bottleneck MLP, a sigmoid weight per channel."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, max(channels // reduction, 4))
        self.fc2 = nn.Linear(max(channels // reduction, 4), channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3, 4))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None, None]


class Stem(nn.Module):
    """Fig. 6: plain convolutions, then parallel branches with factorised 1x7 / 7x1 kernels."""

    def __init__(self, cin: int, w: int) -> None:
        super().__init__()
        self.a = nn.Sequential(conv(cin, 32 // w, (1, 3, 3), IN_PLANE_2), conv(32 // w, 32 // w, (1, 3, 3)),
                               conv(32 // w, 64 // w, (3, 3, 3)))
        self.b_pool = nn.MaxPool3d((1, 3, 3), IN_PLANE_2, (0, 1, 1))
        self.b_conv = conv(64 // w, 96 // w, (1, 3, 3), IN_PLANE_2)
        c = 160 // w
        self.c1 = nn.Sequential(conv(c, 64 // w, (1, 1, 1)), conv(64 // w, 96 // w, (3, 3, 3)))
        self.c2 = nn.Sequential(conv(c, 64 // w, (1, 1, 1)), conv(64 // w, 64 // w, (1, 7, 1)),
                                conv(64 // w, 64 // w, (1, 1, 7)), conv(64 // w, 96 // w, (3, 3, 3)))
        self.out_channels = 192 // w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = torch.cat([self.b_pool(x), self.b_conv(x)], dim=1)
        return torch.cat([self.c1(x), self.c2(x)], dim=1)


class ResidualInception(nn.Module):
    """An Inception-ResNet block: parallel branches, 1x1 projection, scaled residual, SE."""

    def __init__(self, channels: int, branches: Sequence[nn.Module], branch_out: int, scale: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.project = nn.Conv3d(branch_out, channels, 1)
        self.scale = scale
        self.se = SqueezeExcitation(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.project(torch.cat([b(x) for b in self.branches], dim=1))
        return self.se(F.relu(x + self.scale * mixed))


def block_a(c: int, w: int) -> ResidualInception:
    b = [conv(c, 32 // w, (1, 1, 1)),
         nn.Sequential(conv(c, 32 // w, (1, 1, 1)), conv(32 // w, 32 // w, (3, 3, 3))),
         nn.Sequential(conv(c, 32 // w, (1, 1, 1)), conv(32 // w, 48 // w, (1, 3, 3)),
                       conv(48 // w, 64 // w, (3, 3, 3)))]
    return ResidualInception(c, b, (32 + 32 + 64) // w, 0.17)


def block_b(c: int, w: int) -> ResidualInception:
    b = [conv(c, 192 // w, (1, 1, 1)),
         nn.Sequential(conv(c, 128 // w, (1, 1, 1)), conv(128 // w, 160 // w, (1, 1, 7)),
                       conv(160 // w, 192 // w, (1, 7, 1)))]
    return ResidualInception(c, b, 384 // w, 0.1)


def block_c(c: int, w: int) -> ResidualInception:
    b = [conv(c, 192 // w, (1, 1, 1)),
         nn.Sequential(conv(c, 192 // w, (1, 1, 1)), conv(192 // w, 224 // w, (1, 1, 3)),
                       conv(224 // w, 256 // w, (1, 3, 1)))]
    return ResidualInception(c, b, 448 // w, 0.2)


class Reduction(nn.Module):
    """In-plane stride 2: max pooling beside strided convolution branches (slices kept)."""

    def __init__(self, c: int, branch_channels: list[int]) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d((1, 3, 3), IN_PLANE_2, (0, 1, 1))
        self.convs = nn.ModuleList([conv(c, k, (1, 3, 3), IN_PLANE_2) for k in branch_channels])
        self.out_channels = c + sum(branch_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.pool(x), *[cv(x) for cv in self.convs]], dim=1)


class InceptionResNet3D(nn.Module):
    def __init__(self, in_channels: int = 5, classes: int = 2, width: int = 4, blocks: tuple[int, int, int] = (2, 2, 2),
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.stem = Stem(in_channels, width)
        c = self.stem.out_channels
        self.a = nn.Sequential(*[block_a(c, width) for _ in range(blocks[0])])
        self.red_a = Reduction(c, [384 // width // 2, 256 // width // 2])
        c = self.red_a.out_channels
        self.b = nn.Sequential(*[block_b(c, width) for _ in range(blocks[1])])
        self.red_b = Reduction(c, [256 // width // 2, 288 // width // 2])
        c = self.red_b.out_channels
        self.c = nn.Sequential(*[block_c(c, width) for _ in range(blocks[2])])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, classes)
        self.features_channels = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.red_b(self.b(self.red_a(self.a(self.stem(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x).mean(dim=(2, 3, 4))))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """P(metastasis) per input (class 1 of {primary, metastasis})."""
        return torch.softmax(self.forward(x), dim=1)[:, 1]


def is_dynamic(x: torch.Tensor) -> torch.Tensor:
    """(n,) bool: which cubes of a (n, channels, slices, rows, cols) batch come from a dynamic
    series (their inflow and outflow channels, :data:`pipeline.cube.CHANNELS` 2-3, are not all 0).
    A dynamic series whose maps are exactly 0 in the cube's window counts as single-phase here,
    which only leaves the dynamic-only members out."""
    return x[:, 2:4].flatten(1).abs().amax(dim=1) > 0


class Ensemble(nn.Module):
    """Several classifiers trained apart (other data, other seeds) saved as one file with one
    checksum; P(metastasis) is the mean of theirs, which is better calibrated on images unlike
    the training data than any one member (``models/cards/classifier.md``). A member marked
    ``dynamic_only`` (a buffer saved with the weights) joins the mean for dynamic series only, and
    is not run on a batch without one; at least one member must be for every series.

    ``calibration`` (a buffer saved with the weights, rows single-phase and dynamic, columns slope
    and intercept) maps the mean's logit z to ``sigmoid(slope * z + intercept)`` for that kind of
    series: Platt scaling fitted on validation phantoms of both looks
    (:mod:`training.calibration`), so that the node's uncertain band is one of calibrated
    probability. Slope 1 and intercept 0 (the default, and what files saved before 2026-12-02
    load with) leave the mean as it is."""

    dynamic_only: torch.Tensor
    calibration: torch.Tensor

    def __init__(self, members: int = 2, **kwargs: Any) -> None:
        super().__init__()
        self.members = nn.ModuleList(InceptionResNet3D(**kwargs) for _ in range(members))
        self.register_buffer("dynamic_only", torch.zeros(members, dtype=torch.bool))
        self.register_buffer("calibration", identity_calibration())

    def check(self) -> None:
        """Raises ``ValueError`` when no member is for every series (single-phase ones would get none)."""
        if bool(self.dynamic_only.all()):
            raise ValueError("every network of the ensemble is for dynamic series only: "
                             "a single-phase series would have none")

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        dynamic = is_dynamic(x)
        run = [(net, bool(only)) for net, only in zip(cast(list[InceptionResNet3D], list(self.members)),
                                                      self.dynamic_only, strict=True)
               if not only or bool(dynamic.any())]
        probs = torch.stack([net.predict_proba(x) for net, _ in run])  # (members run, n)
        only = torch.tensor([o for _, o in run], device=probs.device)
        used = ~only[:, None] | dynamic[None, :]
        return calibrated(torch.where(used, probs, 0.0).sum(dim=0) / used.sum(dim=0), dynamic, self.calibration)


def identity_calibration() -> torch.Tensor:
    """(2, 2) float32: slope 1, intercept 0 for single-phase (row 0) and dynamic (row 1) series."""
    return torch.tensor([[1.0, 0.0], [1.0, 0.0]])


CALIBRATION_EPS = 1e-6  # the mean is clamped to [eps, 1 - eps] before its logit, in the map and its fit


def calibrated(prob: torch.Tensor, dynamic: torch.Tensor, calibration: torch.Tensor) -> torch.Tensor:
    """``prob`` (n,) mapped through the Platt scaling of each one's kind of series (``dynamic`` (n,)
    bool picks the row of ``calibration``); an identity row returns ``prob`` unchanged."""
    if torch.equal(calibration, identity_calibration().to(calibration)):
        return prob
    logit = torch.logit(prob.clamp(CALIBRATION_EPS, 1 - CALIBRATION_EPS))
    row = calibration.to(prob)[dynamic.long()]  # (n, 2)
    return torch.sigmoid(row[:, 0] * logit + row[:, 1])


Classifier3D = InceptionResNet3D | Ensemble


def load(path: Path) -> tuple[Classifier3D, str]:
    """The classifier in a weights file, checksum verified first (:func:`models.weights.verified_state`),
    shaped like what it holds: an :class:`Ensemble` of as many members as it has, or one
    :class:`InceptionResNet3D` (what ``spinenode train-classifier`` writes); and its SHA-256."""
    state, digest = weights.verified_state(path)
    members = {key.split(".")[1] for key in state if key.startswith("members.")}
    model: Classifier3D = Ensemble(len(members)) if members else InceptionResNet3D()
    if members:  # ensembles saved before 2026-12-01 have no dynamic-only members, before 2026-12-02 no calibration
        state.setdefault("dynamic_only", torch.zeros(len(members), dtype=torch.bool))
        state.setdefault("calibration", identity_calibration())
    model.load_state_dict(state)
    if isinstance(model, Ensemble):
        model.check()
    return model, digest
