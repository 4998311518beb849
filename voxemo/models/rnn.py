"""Recurrent models of seeds 002_0b61, 003_2f41 and 004_d4c4, over the frames of a feature map.

`lstm_mfcc` (seed 002_0b61): two LSTM(128), two Dense 512, Dense; RMSprop, batch 16, patience 20.
`lstm_mfcc_003` / `lstm_mel` (seed 003_2f41's "LSTM"): two LSTM(128), Dense; Adam 1e-3, wd 1e-4.
`bilstm` / `bilstm_mel` (seed 003_2f41): two bidirectional LSTM(128), mean over time, Dense.
`lstm_stft` (seed 004_d4c4): three stacked LSTM(256) over the 128 frames of a 128 x 128 STFT patch;
SGD as that paper. Where a paper does not say, the last time step of the last LSTM feeds the head
(mean pooling for the bidirectional ones), with Dropout 0.2 (0.25 for seed 004) between the LSTM
layers and before each Dense; ReLU after the hidden Dense layers. Any number of frames works.

Letters: B batch, F feature bins, T frames, H LSTM width (both directions), K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import build, keras_lstm_init, register_model


@dataclass(frozen=True)
class RNNConfig:
    n_classes: int = 8  # emotions to tell apart
    input_shape: tuple[int, ...] = (40, 301)  # (F, T): the frames are the sequence; any T works
    hidden: int = 128  # LSTM units per direction
    layers: int = 2  # stacked LSTM layers
    bidirectional: bool = False  # read the frames both ways
    dense: tuple[int, ...] = ()  # hidden Dense layers before the output
    pooling: str = "last"  # "last" time step or "mean" over time
    dropout: float = 0.2  # between LSTM layers and before each Dense

    def __post_init__(self):
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"RNNConfig.pooling must be 'last' or 'mean', not {self.pooling!r}")


class RNN(nn.Module):
    """(B, F, T) -> (B, K): stacked LSTM over the frames, last step or mean over time, Dense head."""

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        self.config = cfg
        self.lstm = keras_lstm_init(nn.LSTM(cfg.input_shape[0], cfg.hidden, num_layers=cfg.layers, batch_first=True,
                                            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.layers > 1 else 0.0))
        width = cfg.hidden * (2 if cfg.bidirectional else 1)
        layers = [nn.Dropout(cfg.dropout)]
        for d in cfg.dense:
            layers += [nn.Linear(width, d), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = d
        layers.append(nn.Linear(width, cfg.n_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))  # (B, F, T) -> (B, T, H)
        h = out[:, -1] if self.config.pooling == "last" else out.mean(1)  # (B, H)
        return self.head(h)  # (B, K)


@register_model
def lstm_mfcc(**kw):
    """Seed 002_0b61's LSTM: two LSTM(128), two Dense 512."""
    return build(RNNConfig, RNN, {"dense": (512, 512)}, kw)


@register_model
def lstm_mfcc_003(**kw):
    """Seed 003_2f41's LSTM on MFCC."""
    return build(RNNConfig, RNN, {}, kw)


@register_model
def lstm_mel(**kw):
    """Seed 003_2f41's LSTM on log-mel."""
    return build(RNNConfig, RNN, {"input_shape": (128, 301)}, kw)


@register_model
def bilstm(**kw):
    """Seed 003_2f41's BiLSTM on MFCC."""
    return build(RNNConfig, RNN, {"bidirectional": True, "pooling": "mean"}, kw)


@register_model
def bilstm_mel(**kw):
    """Seed 003_2f41's BiLSTM on log-mel."""
    return build(RNNConfig, RNN, {"bidirectional": True, "pooling": "mean", "input_shape": (128, 301)}, kw)


@register_model
def lstm_stft(**kw):
    """Seed 004_d4c4's three stacked LSTMs on 128 x 128 STFT patches."""
    return build(RNNConfig, RNN, {"input_shape": (128, 128), "hidden": 256, "layers": 3, "dropout": 0.25}, kw)
