"""Time-distributed CNNs with an LSTM over the chunk sequence.

`td_cnn_lstm` (seed 001_289f): the log-mel map cut into 7 chunks; per chunk four conv blocks
(Conv2d 3x3 pad 1 -> BatchNorm -> ReLU -> MaxPool 2, 4, 4, 4 -> Dropout 0.4; channels 16, 32, 64,
128), applied to every chunk with shared weights; an LSTM over the 7 chunk vectors; Linear.
Our choices: pooling uses ceil_mode so a 43-frame chunk never pools to nothing (43 -> 22 -> 6 -> 2
-> 1 frames, 128 -> 64 -> 16 -> 4 -> 1 bands), and whatever remains is averaged to one vector per
chunk, so any chunk width works; the LSTM has 256 units; its last step feeds the Linear. Training
(not in the paper): Adam lr 1e-3, batch 32, at most 60 epochs, patience 15; white noise at 15-30 dB
SNR on training clips, as the paper augments with AWGN.

`td_cnn_stft` (seed 004_d4c4): per 128 x 128 STFT patch (bins x frames), windows of 16 frames hopped
by 8 (our width; the paper gives the hop), four conv blocks over each window, two LSTM of 1024 over
the window sequence, Dense. Trained as the paper: SGD lr 0.01, momentum 0.8, decay 1e-6, dropout
0.25, random oversampling; a clip's label from its patches. Our choices: the four blocks are the
blocks above with 16, 32, 64, 64 channels, pooling (2, 2), (2, 2), (4, 2), (4, 2) over (bins, frames),
so a 128 x 16 window ends at 2 x 1 and is averaged to one vector; Dropout 0.25 after each block and
between the LSTMs; the last LSTM step feeds the Dense. 15 windows per 128-frame patch.

Letters: B batch, C chunks (or patches), F bins, W frames, S windows in a patch, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import Dropout, build, channels_last, keras_lstm_init, register_model


def conv_block(c_in: int, c_out: int, pool, dropout: float) -> nn.Sequential:
    """Conv2d 3x3 pad 1 -> BatchNorm -> ReLU -> MaxPool (ceil_mode: a side shorter than the pool
    becomes 1, never 0) -> Dropout: (N, c_in, F, W) -> (N, c_out, ceil(F / p), ceil(W / p)).

    The MaxPool runs before the ReLU: max and ReLU commute (ReLU is monotone), so the numbers and
    their gradients are the same, and the ReLU touches a quarter of the values. ReLU and MaxPool hold
    no weights: the state dict is the same either way."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                         nn.MaxPool2d(pool, ceil_mode=True), nn.ReLU(), Dropout(dropout))



@dataclass(frozen=True)
class TDCNNConfig:
    n_classes: int = 8  # emotions to tell apart
    input_shape: tuple[int, ...] = (7, 128, 43)  # (chunks, n_mels, frames per chunk); any size works
    channels: tuple[int, ...] = (16, 32, 64, 128)  # the four conv blocks (the paper's)
    pools: tuple[int, ...] = (2, 4, 4, 4)  # square MaxPool after each block (the paper's)
    dropout: float = 0.4  # after each block (the paper's)
    lstm: int = 256  # LSTM units over the chunk sequence (ours)


class TDCNNLSTM(nn.Module):
    """(B, C, F, W) -> (B, K): one CNN, shared by all chunks, makes a vector per chunk; an LSTM reads them."""

    def __init__(self, cfg: TDCNNConfig):
        super().__init__()
        self.config = cfg
        chans = (1, *cfg.channels)
        self.cnn = channels_last(nn.Sequential(*(conv_block(chans[i], chans[i + 1], p, cfg.dropout)
                                                 for i, p in enumerate(cfg.pools))))
        self.lstm = keras_lstm_init(nn.LSTM(cfg.channels[-1], cfg.lstm, batch_first=True))
        self.head = nn.Linear(cfg.lstm, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]  # x: (B, C, F, W)
        h = self.cnn(x.flatten(0, 1).unsqueeze(1).contiguous(memory_format=torch.channels_last))  # (B*C, ch, F', W')
        h = h.mean(dim=(2, 3)).view(b, c, -1)  # (B, C, ch)
        out, _ = self.lstm(h)  # (B, C, lstm)
        return self.head(out[:, -1])


@register_model
def td_cnn_lstm(**kw):
    """Seed 001_289f's time-distributed 2-D CNN + LSTM over 7 log-mel chunks (with AWGN in training)."""
    return build(TDCNNConfig, TDCNNLSTM, {}, kw)


@dataclass(frozen=True)
class TDCNNSTFTConfig:
    n_classes: int = 7  # emotions to tell apart
    input_shape: tuple[int, ...] = (128, 128)  # (bins, frames) of one patch; frames >= window
    window: int = 16  # frames per window inside the patch (our choice)
    hop: int = 8  # frames between windows (the paper's)
    channels: tuple[int, ...] = (16, 32, 64, 64)  # the four CNN blocks (ours)
    hidden: int = 1024  # both LSTMs (the paper's); tests shrink it
    dropout: float = 0.25  # after each conv block and between the LSTMs (the paper's rate)


class TDCNNSTFT(nn.Module):
    """(B, F, W) patch -> (B, K): windows of the patch through one shared CNN, two LSTMs over them."""

    def __init__(self, cfg: TDCNNSTFTConfig):
        super().__init__()
        self.config = cfg
        chans = (1, *cfg.channels)
        self.cnn = channels_last(nn.Sequential(*(conv_block(chans[i], chans[i + 1], (2, 2) if i < 2 else (4, 2), cfg.dropout)
                                                 for i in range(len(cfg.channels)))))
        self.lstm = keras_lstm_init(nn.LSTM(cfg.channels[-1], cfg.hidden, num_layers=2, batch_first=True,
                                            dropout=cfg.dropout))
        self.head = nn.Linear(cfg.hidden, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]  # x: (B, F, W)
        win = x.unfold(-1, self.config.window, self.config.hop)  # (B, F, S, window)
        s = win.shape[2]
        win = win.permute(0, 2, 1, 3).reshape(b * s, 1, x.shape[1], self.config.window)  # (B*S, 1, F, window)
        win = win.contiguous(memory_format=torch.channels_last)
        h = self.cnn(win).mean(dim=(2, 3)).view(b, s, -1)  # (B, S, ch)
        out, _ = self.lstm(h)  # (B, S, hidden)
        return self.head(out[:, -1])


@register_model
def td_cnn_stft(**kw):
    """Seed 004_d4c4's time-distributed CNN + two LSTM(1024) on 128 x 128 STFT patches."""
    return build(TDCNNSTFTConfig, TDCNNSTFT, {}, kw)
