"""The paper's improved U-Net (section 2.5, Figs. 2-4): residual blocks instead of double
convolutions, attention gates on the skip connections, softmax output.

Input 1 x 512 x 512 (any size divisible by 16 works: the network is fully convolutional);
16 channels after the first block, doubling per level, max pooling down to 32 x 32 at 512
input, bilinear up-sampling back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm (+ ReLU) with a 1x1 conv shortcut to match channels (Fig. 3)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class AttentionGate(nn.Module):
    """Equation 2: t = ReLU(W_x x + W_g g + b1); alpha = sigmoid(psi t + b2); y = x * alpha.

    ``x`` is the encoder's skip feature map, ``g`` the decoder's gating feature map, already
    up-sampled to ``x``'s size (so no resampling happens inside the gate). ``alpha`` is one
    weight in [0, 1] per pixel, shared by all channels of ``x``.
    """

    def __init__(self, x_ch: int, g_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.w_x = nn.Conv2d(x_ch, inter_ch, 1, bias=False)
        self.w_g = nn.Conv2d(g_ch, inter_ch, 1, bias=True)  # carries b1
        self.psi = nn.Conv2d(inter_ch, 1, 1, bias=True)  # carries b2

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.psi(F.relu(self.w_x(x) + self.w_g(g))))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class UpBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.gate = AttentionGate(skip_ch, in_ch, max(skip_ch // 2, 8))
        self.block = ResidualBlock(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([up, self.gate(skip, up)], dim=1))


class AttentionResUNet(nn.Module):
    """Encoder 16-32-64-128 channels with max pooling, bottleneck 256 at 1/16 resolution,
    decoder with attention-gated skips; output logits for {background, lesion}
    (``predict_proba`` applies the softmax)."""

    def __init__(self, in_channels: int = 1, classes: int = 2, base: int = 16) -> None:
        super().__init__()
        chans = [base, base * 2, base * 4, base * 8, base * 16]
        self.encoders = nn.ModuleList([ResidualBlock(in_channels, chans[0])])
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            self.encoders.append(ResidualBlock(a, b))
        self.decoders = nn.ModuleList(
            [UpBlock(chans[i + 1], chans[i], chans[i]) for i in reversed(range(len(chans) - 1))]
        )
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for dec in self.decoders:
            x = dec(x, skips.pop())
        return self.head(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion probability per pixel, (N, H, W)."""
        return torch.softmax(self.forward(x), dim=1)[:, 1]
