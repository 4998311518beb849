"""Time-distributed CNNs with an LSTM over the chunk sequence.

`td_cnn_lstm` (seed 001_289f): the log-mel map cut into 7 chunks; per chunk four conv blocks
(Conv2d 3x3 pad 1 -> BatchNorm -> ReLU -> MaxPool 2, 4, 4, 4 -> Dropout 0.4; channels 16, 32, 64,
128), applied to every chunk with shared weights; an LSTM over the 7 chunk vectors; Linear.
Our choices: pooling uses ceil_mode so a 43-frame chunk never pools to nothing, and whatever
remains is averaged to one vector per chunk; the LSTM has 256 units; its last state feeds the Linear.

`td_cnn_stft` (seed 004_d4c4): per 128 x 128 STFT patch (bins x frames), windows of 16 frames hopped
by 8 (our width; the paper gives the hop), four conv blocks over each window, two LSTM of 1024 over
the window sequence, Dense. Trained as the paper: SGD lr 0.01, momentum 0.8, decay 1e-6, dropout
0.25, random oversampling; a clip's label from its patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features import FrontendConfig
from . import build, register_model


def conv_block(c_in: int, c_out: int, pool, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(pool, ceil_mode=True), nn.Dropout(dropout))


@dataclass(frozen=True)
class TDCNNConfig:
    n_classes: int = 8
    input_shape: tuple[int, ...] = (7, 128, 43)  # (chunks, n_mels, frames per chunk)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    pools: tuple[int, ...] = (2, 4, 4, 4)
    dropout: float = 0.4
    lstm: int = 256


class TDCNNLSTM(nn.Module):
    def __init__(self, cfg: TDCNNConfig):
        super().__init__()
        self.config = cfg
        chans = (1, *cfg.channels)
        self.cnn = nn.Sequential(*(conv_block(chans[i], chans[i + 1], p, cfg.dropout) for i, p in enumerate(cfg.pools)))
        self.lstm = nn.LSTM(cfg.channels[-1], cfg.lstm, batch_first=True)
        self.head = nn.Linear(cfg.lstm, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]  # x: (B, C, F, W)
        h = self.cnn(x.flatten(0, 1).unsqueeze(1))  # (B*C, ch, F', W')
        h = h.mean(dim=(2, 3)).view(b, c, -1)  # (B, C, ch)
        out, _ = self.lstm(h)
        return self.head(out[:, -1])


@register_model(frontend=FrontendConfig(kind="logmel", n_mels=128, chunks=7),
                train={"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 60, "patience": 15,
                       "augment": {"noise_snr": (15.0, 30.0)}})
def td_cnn_lstm(**kw):
    """Seed 001_289f's time-distributed 2-D CNN + LSTM over 7 log-mel chunks (with AWGN in training)."""
    return build(TDCNNConfig, TDCNNLSTM, {}, kw)


@dataclass(frozen=True)
class TDCNNSTFTConfig:
    n_classes: int = 7
    input_shape: tuple[int, ...] = (128, 128)  # (bins, frames) of one patch
    window: int = 16  # frames per window inside the patch (our choice)
    hop: int = 8  # frames between windows (the paper's)
    channels: tuple[int, ...] = (16, 32, 64, 64)  # the four CNN blocks
    hidden: int = 1024  # both LSTMs (the paper's)
    dropout: float = 0.25


class TDCNNSTFT(nn.Module):
    def __init__(self, cfg: TDCNNSTFTConfig):
        super().__init__()
        self.config = cfg
        chans = (1, *cfg.channels)
        self.cnn = nn.Sequential(*(conv_block(chans[i], chans[i + 1], (2, 2) if i < 2 else (4, 2), cfg.dropout)
                                   for i in range(len(cfg.channels))))
        self.lstm = nn.LSTM(cfg.channels[-1], cfg.hidden, num_layers=2, batch_first=True, dropout=cfg.dropout)
        self.head = nn.Linear(cfg.hidden, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]  # x: (B, F, W)
        win = x.unfold(-1, self.config.window, self.config.hop)  # (B, F, S, window)
        s = win.shape[2]
        win = win.permute(0, 2, 1, 3).reshape(b * s, 1, x.shape[1], self.config.window)  # (B*S, 1, F, window)
        h = self.cnn(win).mean(dim=(2, 3)).view(b, s, -1)  # (B, S, ch)
        out, _ = self.lstm(h)
        return self.head(out[:, -1])


STFT_PATCHES = FrontendConfig.for_kind("stft", window_frames=128, window_hop=64)
SEED004_TRAIN = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.8, "lr_decay": 1e-6, "batch_size": 32,
                 "epochs": 60, "patience": 15, "oversample": True}


@register_model(frontend=STFT_PATCHES, train=SEED004_TRAIN, per_window=True)
def td_cnn_stft(**kw):
    """Seed 004_d4c4's time-distributed CNN + two LSTM(1024) on 128 x 128 STFT patches."""
    return build(TDCNNSTFTConfig, TDCNNSTFT, {}, kw)
