"""Convolutional models of seeds 002_0b61, 003_2f41 and 004_d4c4.

`cnn1d_mean_mfcc` (seed 002_0b61, improved variant): the per-frame mean of 40 MFCCs as a 1-D
series; 8 Conv1D layers, kernel 8, filters 256, 256, 128, 128, 128, 128, 64, 64, each with
BatchNorm, ReLU and Dropout 0.2; MaxPool 8 after the 2nd and the 6th. Our choice: global average
pooling before the Dense (the paper flattens), so the net takes any length.
`cnn2d_mfcc` (seed 002_0b61): the same in 2-D on the (40, T) MFCC map with half the filters. Our
choice: 3 x 3 kernels (8 x 8 kernels at full resolution cost ~5 GFLOP per clip here) and (2, 8)
pooling after the 1st and the 6th layer. Both trained with RMSprop, batch 16, patience 20.
`cnn1d_baseline` / `cnn1d_baseline_mel` (seed 003_2f41): three Conv1D blocks (64, 128, 128 filters,
kernels 5, 5, 3) with BatchNorm, ReLU, Dropout 0.3 and MaxPool 2 over the frames of MFCC or log-mel
maps, global average pooling, Dense; Adam lr 1e-3, weight decay 1e-4.
`cnn_stft` (seed 004_d4c4): on a 128 x 128 STFT patch, two Conv2d (32, 64 filters, 3 x 3) each with
ReLU and MaxPool, Flatten, Dense 1024, Dropout 0.25, Dense. Our choice: MaxPool 4 (not 2) so the
Flatten is 4096 wide rather than 65536.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features import FrontendConfig
from . import build, register_model


@dataclass(frozen=True)
class CNN1DMeanConfig:
    n_classes: int = 7
    input_shape: tuple[int, ...] = (301,)  # (T,)
    filters: tuple[int, ...] = (256, 256, 128, 128, 128, 128, 64, 64)
    kernel: int = 8
    pool_after: tuple[int, ...] = (2, 6)  # MaxPool 8 after these layers (1-based)
    pool: int = 8
    dropout: float = 0.2


class CNN1DMean(nn.Module):
    def __init__(self, cfg: CNN1DMeanConfig):
        super().__init__()
        self.config = cfg
        layers, c = [], 1
        for i, f in enumerate(cfg.filters, start=1):
            layers += [nn.Conv1d(c, f, cfg.kernel, padding="same"), nn.BatchNorm1d(f), nn.ReLU(), nn.Dropout(cfg.dropout)]
            if i in cfg.pool_after:
                layers.append(nn.MaxPool1d(cfg.pool, ceil_mode=True))
            c = f
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.unsqueeze(1))  # (B, C, T')
        return self.head(h.mean(-1))


@dataclass(frozen=True)
class CNN2DConfig:
    n_classes: int = 7
    input_shape: tuple[int, ...] = (40, 301)  # (n_mfcc, T)
    filters: tuple[int, ...] = (128, 128, 64, 64, 64, 64, 32, 32)
    pool_after: tuple[int, ...] = (1, 6)
    pool: tuple[int, int] = (2, 8)
    dropout: float = 0.2


class CNN2D(nn.Module):
    def __init__(self, cfg: CNN2DConfig):
        super().__init__()
        self.config = cfg
        layers, c = [], 1
        for i, f in enumerate(cfg.filters, start=1):
            layers += [nn.Conv2d(c, f, 3, padding=1), nn.BatchNorm2d(f), nn.ReLU(), nn.Dropout(cfg.dropout)]
            if i in cfg.pool_after:
                layers.append(nn.MaxPool2d(tuple(cfg.pool), ceil_mode=True))
            c = f
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.unsqueeze(1))  # (B, C, F', T')
        return self.head(h.mean(dim=(2, 3)))


SEED002_TRAIN = {"optimizer": "rmsprop", "lr": 1e-4, "momentum": 0.0, "batch_size": 16, "epochs": 100, "patience": 20}


@register_model(frontend=FrontendConfig(kind="mean_mfcc", n_mfcc=40), train=SEED002_TRAIN)
def cnn1d_mean_mfcc(**kw):
    """Seed 002_0b61's 1-D CNN on the mean-MFCC series (improved variant)."""
    return build(CNN1DMeanConfig, CNN1DMean, {}, kw)


@register_model(frontend=FrontendConfig(kind="mfcc", n_mfcc=40), train=SEED002_TRAIN)
def cnn2d_mfcc(**kw):
    """Seed 002_0b61's 2-D CNN on the MFCC map."""
    return build(CNN2DConfig, CNN2D, {}, kw)


@dataclass(frozen=True)
class CNN1DBaselineConfig:
    n_classes: int = 8
    input_shape: tuple[int, ...] = (40, 301)  # (F, T)
    filters: tuple[int, ...] = (64, 128, 128)
    kernels: tuple[int, ...] = (5, 5, 3)
    dropout: float = 0.3


class CNN1DBaseline(nn.Module):
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
        return self.head(self.body(x).mean(-1))  # (B, F, T) -> (B, K)


SEED003_TRAIN = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "epochs": 50, "patience": 10}


@register_model(frontend=FrontendConfig(kind="mfcc", n_mfcc=40), train=SEED003_TRAIN)
def cnn1d_baseline(**kw):
    """Seed 003_2f41's 1-D CNN on MFCC."""
    return build(CNN1DBaselineConfig, CNN1DBaseline, {}, kw)


@register_model(frontend=FrontendConfig(kind="logmel", n_mels=128), train=SEED003_TRAIN)
def cnn1d_baseline_mel(**kw):
    """Seed 003_2f41's 1-D CNN on log-mel."""
    return build(CNN1DBaselineConfig, CNN1DBaseline, {"input_shape": (128, 301)}, kw)


@dataclass(frozen=True)
class CNNSTFTConfig:
    n_classes: int = 7
    input_shape: tuple[int, ...] = (128, 128)  # (bins, frames) of one patch
    filters: tuple[int, ...] = (32, 64)
    pool: int = 4
    dense: int = 1024
    dropout: float = 0.25


class CNNSTFT(nn.Module):
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
        return self.head(self.body(x.unsqueeze(1)))  # (B, F, W) -> (B, K)


from .td_cnn import SEED004_TRAIN, STFT_PATCHES  # noqa: E402


@register_model(frontend=STFT_PATCHES, train=SEED004_TRAIN, per_window=True)
def cnn_stft(**kw):
    """Seed 004_d4c4's CNN on 128 x 128 STFT patches."""
    return build(CNNSTFTConfig, CNNSTFT, {}, kw)
