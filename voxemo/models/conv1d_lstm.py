"""Conv1D-LSTM on MFCC frames (seed 000_9bc1).

The paper: 12 MFCCs; Conv1D 256 filters, kernel 5 -> BatchNorm -> two LSTM(256) -> Dropout ->
Flatten -> two Dense -> a second group Conv1D + two LSTM with Dropout between -> Flatten -> Dense ->
softmax; Adam, lr 0.01. The speech variant drops the Dropout between the second group's LSTMs.

Choices where the paper is vague (ours):
- a MaxPool of 4 over time after the first Conv1D keeps the first Flatten at T/4 x 256 (the paper's
  frames of [32, 256] suggest it pooled too);
- the two Dense layers are 256 wide; the second's output is read as a sequence of 32 steps of 8
  features, which the second group's Conv1D (kernel 5, 256 filters) scans;
- dropout 0.2; ReLU after each Conv1D; zero 'same' padding (time keeps its length up to the pool);
  gradient clipping at 1.0 in training (lr 0.01 with LSTMs diverges without it);
- the LSTMs keep PyTorch's initial weights, unlike the other papers' LSTMs (`keras_lstm_init`): from
  Keras' weights the paper's Adam at lr 0.01 blew the first epoch's loss up to 8-12 and left the
  net predicting one class (validation UA 1/6 for 9 epochs, song and speech; RESULTS.md, seed000),
  where PyTorch's weights learn (`keras_init=True` gives the Keras start);
- as the paper lists them, the first group's two LSTMs have no Dropout between them (only after the
  pair); `dropout_between_lstms` concerns the second group's, the one the variants differ in; a
  Dropout after the second pair too (ours), in both variants;
- the front-end: 12 MFCCs from 40 mel bands (the paper gives the 12, not the bands), 32 ms frames
  hop 10 ms as the module defaults; batch 32, at most 60 epochs, patience 15 (the paper gives only
  Adam and lr 0.01).
Input (B, n_mfcc, T) with T fixed by `input_shape` (the Flatten needs it): a clip of another length
is an error naming both lengths, so crop or pad clips to the training duration.

Letters: B batch, T frames, S the second group's steps (seq_steps), H LSTM units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import Dropout, build, keras_lstm_init, register_model


@dataclass(frozen=True)
class Conv1DLSTMConfig:
    n_classes: int = 6  # emotions to tell apart
    input_shape: tuple[int, ...] = (12, 301)  # (n_mfcc, T); T is fixed: the first Flatten depends on it
    filters: int = 256  # Conv1D filters, both groups (the paper's)
    kernel: int = 5  # Conv1D kernel, both groups (the paper's)
    pool: int = 4  # time pooling after the first Conv1D (our choice)
    lstm: int = 256  # LSTM units, all four (the paper's)
    dense: int = 256  # width of the first group's two Dense layers (= 32 x 8 for the second group)
    seq_steps: int = 32  # the second group reads the Dense output as seq_steps x (dense / seq_steps)
    dropout: float = 0.2  # after each LSTM pair, and between the second pair's LSTMs when asked (ours)
    dropout_between_lstms: bool = True  # Dropout between the second group's LSTMs: song True, speech False
    keras_init: bool = False  # start the LSTMs from Keras' weights, as the other papers' LSTMs (see the docstring)

    def __post_init__(self):
        if self.dense % self.seq_steps:
            raise ValueError(f"Conv1DLSTMConfig: dense ({self.dense}) must be a multiple of "
                             f"seq_steps ({self.seq_steps})")
        if self.input_shape[-1] < self.pool:
            raise ValueError(f"Conv1DLSTMConfig: {self.input_shape[-1]} frames is fewer than one pool of {self.pool}")


class LSTMPair(nn.Module):
    """Two LSTMs, with optional dropout between them: (B, T, C) -> (B, T, H), the whole sequence."""

    def __init__(self, c_in: int, hidden: int, dropout_between: float, keras_init: bool):
        super().__init__()
        init = keras_lstm_init if keras_init else (lambda lstm: lstm)
        self.first = init(nn.LSTM(c_in, hidden, batch_first=True))
        self.drop = Dropout(dropout_between)
        self.second = init(nn.LSTM(hidden, hidden, batch_first=True))

    def forward(self, x):
        x, _ = self.first(x)
        x, _ = self.second(self.drop(x))
        return x


class Conv1DLSTM(nn.Module):
    """(B, n_mfcc, T) -> (B, K): group 1 (Conv1D, LSTM pair, Flatten, two Dense) whose output, read as a
    short sequence, feeds group 2 (Conv1D, LSTM pair, Flatten) and the output layer."""

    def __init__(self, cfg: Conv1DLSTMConfig):
        super().__init__()
        self.config = cfg
        c_in, t = cfg.input_shape
        between = cfg.dropout if cfg.dropout_between_lstms else 0.0
        self.conv1 = nn.Sequential(nn.Conv1d(c_in, cfg.filters, cfg.kernel, padding=cfg.kernel // 2),
                                   nn.BatchNorm1d(cfg.filters), nn.ReLU(), nn.MaxPool1d(cfg.pool))
        self.lstm1 = LSTMPair(cfg.filters, cfg.lstm, 0.0, cfg.keras_init)  # the paper: Dropout after the pair only
        self.drop1 = Dropout(cfg.dropout)
        t1 = t // cfg.pool
        self.dense1 = nn.Sequential(nn.Linear(t1 * cfg.lstm, cfg.dense), nn.ReLU(),
                                    nn.Linear(cfg.dense, cfg.dense), nn.ReLU())
        feat2 = cfg.dense // cfg.seq_steps
        self.conv2 = nn.Sequential(nn.Conv1d(feat2, cfg.filters, cfg.kernel, padding=cfg.kernel // 2),
                                   nn.BatchNorm1d(cfg.filters), nn.ReLU())
        self.lstm2 = LSTMPair(cfg.filters, cfg.lstm, between, cfg.keras_init)
        self.drop2 = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.seq_steps * cfg.lstm, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], self.config.input_shape[-1]  # x: (B, n_mfcc, T)
        if x.shape[-1] != t:
            raise ValueError(f"conv1d_lstm was built for {t} frames (input_shape) and got {x.shape[-1]}")
        h = self.conv1(x).transpose(1, 2)  # (B, T/pool, filters)
        h = self.drop1(self.lstm1(h)).flatten(1)  # (B, T/pool * H)
        h = self.dense1(h)  # (B, dense)
        h = h.view(b, self.config.seq_steps, -1).transpose(1, 2)  # (B, dense / S, S)
        h = self.conv2(h).transpose(1, 2)  # (B, S, filters)
        h = self.drop2(self.lstm2(h)).flatten(1)  # (B, S * H)
        return self.head(h)


@register_model
def conv1d_lstm(**kw):
    """Seed 000_9bc1's Conv1D-LSTM, song variant (dropout between the LSTMs)."""
    return build(Conv1DLSTMConfig, Conv1DLSTM, {}, kw)


@register_model
def conv1d_lstm_speech(**kw):
    """Seed 000_9bc1's Conv1D-LSTM, speech variant (no dropout between the LSTMs)."""
    return build(Conv1DLSTMConfig, Conv1DLSTM, {"dropout_between_lstms": False}, kw)
