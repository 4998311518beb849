"""Heads on a frozen pretrained encoder's pooled layer statistics (issue: a pretrained speech encoder).

Input: per clip, the mean and the standard deviation over frames of every hidden state of the encoder
(`voxemo.encoders`, `voxemo.features.EncoderStats`): (B, L + 1, 2, D), row 0 the conv stem, row L
the encoder's output. Middle layers carry most of the paralinguistic information and song is best
heard on the stem, so which layers matter is learned, not fixed:

`encoder_head`: each layer's statistics normalised per clip (a LayerNorm without weights over D, so
    the loudness and the recording's offsets of one clip do not move it), a learned softmax-weighted
    sum of the layers (SUPERB's weighted layer sum), then a small MLP: Dropout, Linear 2D -> hidden,
    GELU, Dropout, Linear -> K.
`encoder_probe`: the reference row, a linear probe: the chosen layers' statistics, flattened, one
    Linear layer (with the pipeline's standardisation in front and weight decay, a logistic regression).

Letters: B batch, L encoder blocks, D width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import build, register_model


@dataclass(frozen=True)
class EncoderHeadConfig:
    n_classes: int = 8  # classes to tell apart
    input_shape: tuple[int, ...] = (7, 2, 512)  # (L + 1, 2, D): Whisper base's stem + 6 blocks, mean and std, width
    layers: tuple[int, ...] | None = None  # the hidden states used (0 = stem); None: all
    per_clip_norm: bool = True  # standardise each layer's mean and std vectors over D within the clip
    hidden: int = 256  # MLP width; 0 makes the head linear after the layer sum
    dropout: float = 0.3  # before each Linear


class EncoderHead(nn.Module):
    """(B, L + 1, 2, D) pooled statistics -> (B, K): per-clip norm, softmax-weighted layer sum, MLP."""

    def __init__(self, cfg: EncoderHeadConfig):
        super().__init__()
        self.config = cfg
        n_states, _, width = cfg.input_shape
        self.layers = list(cfg.layers) if cfg.layers is not None else list(range(n_states))
        self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))  # softmax -> layer weights
        self.norm = nn.LayerNorm(width, elementwise_affine=False) if cfg.per_clip_norm else nn.Identity()
        dims = 2 * width
        mlp: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        if cfg.hidden:
            mlp += [nn.Linear(dims, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            dims = cfg.hidden
        self.mlp = nn.Sequential(*mlp, nn.Linear(dims, cfg.n_classes))

    def layer_weights(self) -> torch.Tensor:
        """The learned weight of each used layer (sums to 1)."""
        return self.layer_logits.softmax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x[:, self.layers])  # (B, L', 2, D)
        x = torch.einsum("blsd,l->bsd", x, self.layer_weights())  # (B, 2, D)
        return self.mlp(x.flatten(1))  # (B, K)


@dataclass(frozen=True)
class EncoderProbeConfig:
    n_classes: int = 8  # classes to tell apart
    input_shape: tuple[int, ...] = (7, 2, 512)  # (L + 1, 2, D)
    layers: tuple[int, ...] | None = (4,)  # the hidden states used; None: all


class EncoderProbe(nn.Module):
    """(B, L + 1, 2, D) -> (B, K): one Linear layer on the chosen layers' statistics."""

    def __init__(self, cfg: EncoderProbeConfig):
        super().__init__()
        self.config = cfg
        n_states, _, width = cfg.input_shape
        self.layers = list(cfg.layers) if cfg.layers is not None else list(range(n_states))
        self.linear = nn.Linear(len(self.layers) * 2 * width, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[:, self.layers].flatten(1))  # (B, K)


@register_model
def encoder_head(**kw):
    """Ours: per-clip normalised layer statistics, learned layer weights, small MLP."""
    return build(EncoderHeadConfig, EncoderHead, {}, kw)


@register_model
def encoder_probe(**kw):
    """Reference: a linear probe on one layer's (default 4) mean and std."""
    return build(EncoderProbeConfig, EncoderProbe, {}, kw)
