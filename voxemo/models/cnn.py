"""Convolutional models of seeds 002_0b61, 003_2f41 and 004_d4c4.

`cnn1d_mean_mfcc` (seed 002_0b61, improved variant): the per-frame mean of 40 MFCCs as a 1-D
series; 8 Conv1D layers, kernel 8, filters 256, 256, 128, 128, 128, 128, 64, 64, each with
BatchNorm, ReLU and Dropout 0.2; MaxPool 8 after the 2nd and the 6th (301 frames -> 38 -> 5). Our
choices: 'same' zero padding (3 before, 4 after: the kernel is even); global average pooling before
the Dense (the paper flattens), so the net takes any length.
`cnn2d_mfcc` (seed 002_0b61): the same in 2-D on the (40, T) MFCC map with half the filters. Our
choice: 3 x 3 kernels (8 x 8 kernels at full resolution cost ~5 GFLOP per clip here) and (2, 8)
pooling after the 1st and the 6th layer, global average pooling before the Dense. Both are one
`PlainCNN`: a (T,) input shape makes it 1-D, an (F, T) one 2-D. Both trained
with RMSprop, batch 16, patience 20; lr 1e-3, RMSprop's usual default (Keras, where the paper's
layer names come from), and at most 100 epochs (ours: the paper states neither). With lr 1e-4 the
2-D CNN stayed near chance on its validation clips after 4 epochs (RESULTS.md, seed002).
`cnn1d_baseline` / `cnn1d_baseline_mel` (seed 003_2f41): three Conv1D blocks (64, 128, 128 filters,
kernels 5, 5, 3) with BatchNorm, ReLU, Dropout 0.3 and MaxPool 2 over the frames of MFCC or log-mel
maps, global average pooling, Dense; Adam lr 1e-3, weight decay 1e-4. The block sizes are ours (the
paper names the layer types only); batch 32, at most 50 epochs, patience 10.
`cnn_stft` (seed 004_d4c4): on a 128 x 128 STFT patch, two Conv2d (32, 64 filters, 3 x 3) each with
ReLU and MaxPool, Flatten, Dense 1024, Dropout 0.25, Dense; SGD lr 0.01, momentum 0.8, decay 1e-6.
Our choice: MaxPool 4 (not 2) so the Flatten is 4096 wide rather than 65536 (a 67M-weight Dense).

Letters: B batch, T frames, F feature bins, W frames of a patch, C channels, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import Dropout, build, channels_last, register_model


class SameConv1d(nn.Conv1d):
    """Conv1d with Keras' 'same' zero padding, (k - 1) // 2 before and k // 2 after: PyTorch's
    padding="same" gives the same numbers but warns and copies for even kernels."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__(c_in, c_out, kernel)
        self.pad = ((kernel - 1) // 2, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.pad))  # (B, C, T) -> (B, c_out, T)


@dataclass(frozen=True)
class PlainCNNConfig:
    n_classes: int = 7  # emotions to tell apart
    input_shape: tuple[int, ...] = (301,)  # (T,): a series, 1-D convolutions; (F, T): a map, 2-D ones; any size works (global pooling)
    filters: tuple[int, ...] = (256, 256, 128, 128, 128, 128, 64, 64)  # the 8 conv layers (the paper's 1-D ones)
    kernel: int = 8  # every conv, 'same' padding (the paper's 1-D; even kernels on a series only)
    pool_after: tuple[int, ...] = (2, 6)  # MaxPool after these layers, 1-based (ours: where 8 x 8 fits 301)
    pool: int | tuple[int, ...] = 8  # MaxPool size, one per axis for a map (the paper's 1-D)
    dropout: float = 0.2  # after every conv (the paper's improved variant)

    def __post_init__(self):
        if len(self.input_shape) not in (1, 2):
            raise ValueError(f"PlainCNNConfig.input_shape is (T,) or (F, T), not {self.input_shape}")
        if len(self.input_shape) == 2 and self.kernel % 2 == 0:
            raise ValueError(f"PlainCNNConfig: an even kernel ({self.kernel}) works on a (T,) series only")


class PlainCNN(nn.Module):
    """(B, T) series or (B, F, T) map as one channel -> (B, K): conv stack (each conv with BatchNorm,
    ReLU, Dropout; MaxPool after some), mean over the remaining axes, Dense."""

    def __init__(self, cfg: PlainCNNConfig):
        super().__init__()
        self.config = cfg
        two_d = len(cfg.input_shape) == 2
        norm, pool = (nn.BatchNorm2d, nn.MaxPool2d) if two_d else (nn.BatchNorm1d, nn.MaxPool1d)
        layers, c = [], 1
        for i, f in enumerate(cfg.filters, start=1):
            conv = nn.Conv2d(c, f, cfg.kernel, padding=cfg.kernel // 2) if two_d else SameConv1d(c, f, cfg.kernel)
            layers += [conv, norm(f), nn.ReLU(), Dropout(cfg.dropout)]
            if i in cfg.pool_after:
                layers.append(pool(cfg.pool, ceil_mode=True))
            c = f
        self.body = channels_last(nn.Sequential(*layers)) if two_d else nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, T) or (B, 1, F, T)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.body(x)  # (B, C, T') or (B, C, F', T')
        return self.head(h.flatten(2).mean(-1))  # (B, K)


@register_model
def cnn1d_mean_mfcc(**kw):
    """Seed 002_0b61's 1-D CNN on the mean-MFCC series (improved variant)."""
    return build(PlainCNNConfig, PlainCNN, {}, kw)


@register_model
def cnn2d_mfcc(**kw):
    """Seed 002_0b61's 2-D CNN on the MFCC map."""
    return build(PlainCNNConfig, PlainCNN, {"input_shape": (40, 301), "filters": (128, 128, 64, 64, 64, 64, 32, 32),
                                           "kernel": 3, "pool_after": (1, 6), "pool": (2, 8)}, kw)


@dataclass(frozen=True)
class CNN1DBaselineConfig:
    n_classes: int = 8  # emotions to tell apart
    input_shape: tuple[int, ...] = (40, 301)  # (F, T): F is the input channels; any T works
    filters: tuple[int, ...] = (64, 128, 128)  # one Conv1D block each (ours)
    kernels: tuple[int, ...] = (5, 5, 3)  # their kernels, as long as filters (ours)
    dropout: float = 0.3  # after every block (ours)

    def __post_init__(self):
        if len(self.filters) != len(self.kernels):
            raise ValueError("CNN1DBaselineConfig: filters and kernels must be as long as each other")


class CNN1DBaseline(nn.Module):
    """(B, F, T) -> (B, K): Conv1D blocks over time with the F bins as channels, mean over time, Dense."""

    def __init__(self, cfg: CNN1DBaselineConfig):
        super().__init__()
        self.config = cfg
        layers, c = [], cfg.input_shape[0]
        for f, k in zip(cfg.filters, cfg.kernels):
            layers += [nn.Conv1d(c, f, k, padding=k // 2), nn.BatchNorm1d(f), nn.ReLU(), nn.Dropout(cfg.dropout), nn.MaxPool1d(2)]
            c = f
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, F, T) -> (B, C, T / 2^blocks)
        return self.head(h.mean(-1))  # (B, K)


@register_model
def cnn1d_baseline(**kw):
    """Seed 003_2f41's 1-D CNN on MFCC."""
    return build(CNN1DBaselineConfig, CNN1DBaseline, {}, kw)


@register_model
def cnn1d_baseline_mel(**kw):
    """Seed 003_2f41's 1-D CNN on log-mel."""
    return build(CNN1DBaselineConfig, CNN1DBaseline, {"input_shape": (128, 301)}, kw)


@dataclass(frozen=True)
class CNNSTFTConfig:
    n_classes: int = 7  # emotions to tell apart
    input_shape: tuple[int, ...] = (128, 128)  # (bins, frames) of one patch; fixed (the Flatten needs it)
    filters: tuple[int, ...] = (32, 64)  # the two Conv2d (ours; the paper gives two layers)
    pool: int = 4  # MaxPool after each conv (ours; see the module docstring)
    dense: int = 1024  # hidden Dense (the paper's); tests shrink it
    dropout: float = 0.25  # after the hidden Dense (the paper's)


class CNNSTFT(nn.Module):
    """(B, F, W) patch -> (B, K): two conv + max-pool, Flatten, Dense, Dropout, Dense."""

    def __init__(self, cfg: CNNSTFTConfig):
        super().__init__()
        self.config = cfg
        f1, f2 = cfg.filters
        self.body = nn.Sequential(
            nn.Conv2d(1, f1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(cfg.pool),
            nn.Conv2d(f1, f2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(cfg.pool),
        )
        h, w = (s // cfg.pool // cfg.pool for s in cfg.input_shape)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(f2 * h * w, cfg.dense), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.dense, cfg.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.unsqueeze(1))  # (B, 1, F, W) -> (B, C, F / pool^2, W / pool^2)
        return self.head(h)  # (B, K)


@register_model
def cnn_stft(**kw):
    """Seed 004_d4c4's CNN on 128 x 128 STFT patches."""
    return build(CNNSTFTConfig, CNNSTFT, {}, kw)
