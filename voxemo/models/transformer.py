"""Transformer encoder over feature frames (seed 003_2f41), on MFCC or log-mel.

Frames are averaged in groups of `pool` (ours, 4: one token per 40 ms; attention over all 301
frames, and its dropout, made a training step about seven times as slow on 2 cores), each token is
projected to d_model, sinusoidal positions are added (any length T works), pre-norm
encoder layers (batch first), mean over time, Linear. Adam lr 1e-3, weight decay 1e-4. Sizes are
ours (the paper gives none): d_model 128, 4 heads, 3 layers, feed-forward 256, dropout 0.1, and a
final LayerNorm (pre-norm layers leave the residual stream unnormalised). Batch 32, at most 50
epochs, patience 10. No attention mask: the clips of a batch have one length.

Letters: B batch, F feature bins, T frames, D d_model, K classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import build, register_model


@dataclass(frozen=True)
class TransformerConfig:
    n_classes: int = 8  # emotions to tell apart
    input_shape: tuple[int, ...] = (40, 301)  # (F, T); any T works
    d_model: int = 128  # width of the frame embeddings
    heads: int = 4  # attention heads; must divide d_model
    layers: int = 3  # encoder layers
    ff: int = 256  # hidden width of each layer's feed-forward block
    dropout: float = 0.1  # in attention and feed-forward blocks
    pool: int = 4  # frames averaged into one token (ours; 1 keeps every frame)


def sinusoids(t: int, d: int) -> torch.Tensor:
    """(t, d) sinusoidal position encoding (Vaswani et al.)."""
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class TransformerClassifier(nn.Module):
    """(B, F, T) -> (B, K): frames as tokens, encoder, mean over time, Linear."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.pool = nn.AvgPool1d(cfg.pool, ceil_mode=True) if cfg.pool > 1 else nn.Identity()
        self.proj = nn.Linear(cfg.input_shape[0], cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.pool(x).transpose(1, 2))  # (B, F, T) -> (B, ceil(T / pool), D)
        h = h + sinusoids(h.shape[1], h.shape[2]).to(h)  # (B, T, D)
        h = self.norm(self.encoder(h))  # (B, T, D)
        return self.head(h.mean(1))  # (B, K)


@register_model
def transformer(**kw):
    """Seed 003_2f41's Transformer on MFCC."""
    return build(TransformerConfig, TransformerClassifier, {}, kw)


@register_model
def transformer_mel(**kw):
    """Seed 003_2f41's Transformer on log-mel."""
    return build(TransformerConfig, TransformerClassifier, {"input_shape": (128, 301)}, kw)
