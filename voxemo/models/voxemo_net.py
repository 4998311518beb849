"""voxemo_net: our reference model, the best accuracy per CPU-second we found.

A compact 2-D CNN over the log-mel map (64 mel bands, 50-7600 Hz, 20 ms hop), four stages of strided
3x3 convolutions (with residual 3x3 convs between) that shrink frequency faster than time; the remaining frequency axis is folded into channels; one bidirectional GRU over time; then
attentive statistics pooling (an attention-weighted mean and standard deviation over time, as in
speaker embeddings), dropout and a Linear layer. Any length of at least ~16 frames works.
Trained with AdamW, one-cycle schedule, SpecAugment, mixup and label smoothing (the settings are
`voxemo.papers.VOXEMO_TRAIN`).

Letters: B batch, F mel bands, T frames, C channels, H GRU width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import build, register_model


@dataclass(frozen=True)
class VoxemoNetConfig:
    n_classes: int = 8
    input_shape: tuple[int, ...] = (64, 151)  # (F, T)
    channels: tuple[int, ...] = (16, 32, 64, 96)  # conv stages
    strides: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 1), (2, 1))  # (freq, time) stride per stage
    depth: int = 1  # extra stride-1 convs per stage (0 = one strided conv per stage)
    gru: int = 96  # GRU units per direction
    dropout: float = 0.3  # before the output layer
    utterance_norm: bool = False  # subtract each clip's own mean per mel band (removes channel/timbre offsets)


def conv_bn(c_in: int, c_out: int, stride) -> nn.Sequential:
    """Conv 3x3 -> BatchNorm -> ReLU. Strided convolutions rather than max-pooling: on CPU the
    pooling's backward pass costs several times the convolution's."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=tuple(stride), padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Stage(nn.Module):
    """A strided conv, then `depth` residual 3x3 convs at the new resolution."""

    def __init__(self, c_in: int, c_out: int, stride, depth: int):
        super().__init__()
        self.down = conv_bn(c_in, c_out, stride)
        self.convs = nn.ModuleList(conv_bn(c_out, c_out, (1, 1)) for _ in range(depth))

    def forward(self, x):
        x = self.down(x)
        for conv in self.convs:
            x = x + conv(x)
        return x


class AttentiveStatsPool(nn.Module):
    """(B, T, D) -> (B, 2D): attention-weighted mean and standard deviation over time."""

    def __init__(self, d: int, hidden: int = 64):
        super().__init__()
        self.attn = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h):
        w = self.attn(h).softmax(dim=1)  # (B, T, 1)
        mean = (w * h).sum(1)
        var = (w * h.square()).sum(1) - mean.square()
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1)


class VoxemoNet(nn.Module):
    def __init__(self, cfg: VoxemoNetConfig):
        super().__init__()
        self.config = cfg
        chans = (1, *cfg.channels)
        self.stages = nn.Sequential(*(Stage(chans[i], chans[i + 1], st, cfg.depth) for i, st in enumerate(cfg.strides)))
        f = cfg.input_shape[0]
        for st in cfg.strides:
            f = (f - 1) // st[0] + 1
        self.gru = nn.GRU(cfg.channels[-1] * f, cfg.gru, batch_first=True, bidirectional=True)
        self.pool = AttentiveStatsPool(2 * cfg.gru)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(4 * cfg.gru, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.utterance_norm:
            x = x - x.mean(dim=-1, keepdim=True)  # (B, F, T)
        h = self.stages(x.unsqueeze(1))  # (B, C, F', T')
        h = h.flatten(1, 2).transpose(1, 2)  # (B, T', C*F')
        h, _ = self.gru(h)  # (B, T', 2H)
        return self.head(self.drop(self.pool(h)))


@register_model
def voxemo_net(**kw):
    """Our reference model: compact CNN + BiGRU + attentive statistics pooling on 64-band log-mel."""
    return build(VoxemoNetConfig, VoxemoNet, {}, kw)
