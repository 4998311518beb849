"""Heads on a frozen pretrained encoder's pooled layer statistics (issue: a pretrained speech encoder).

Input: per clip, the mean and the standard deviation over frames of every hidden state of the encoder
(`voxemo.encoders`, `voxemo.features.EncoderStats`): (B, L + 1, 2, D), row 0 the conv stem, row L
the encoder's output. Middle layers carry most of the paralinguistic information and song is best
heard on the stem, so which layers matter is learned, not fixed:

`encoder_head`: each layer's statistics normalised per clip (a LayerNorm without weights over D, so
    the loudness and the recording's offsets of one clip do not move it), a learned softmax-weighted
    sum of the layers (SUPERB's weighted layer sum), then a small MLP: Dropout, Linear 2D -> hidden,
    GELU, Dropout, Linear -> K.
`encoder_ensemble`: M `encoder_head`s on the same input, each initialised apart and trained on its own
    loss (in training the model gives one set of logits per member, (B, M, K)); in evaluation the
    log of their mean probability, (B, K): a deep ensemble (Lakshminarayanan et al. 2017) in one file,
    so the pipeline, export and service see one model. Members share the batches, mixup and early
    stopping; they differ by initialisation and dropout.
`encoder_probe`: the reference row, a linear probe: the chosen layers' statistics (default all),
    flattened, one Linear layer. With the pipeline's standardisation in front and its recipe
    (`papers.PROBE_TRAIN`: L2 on the weights, not the bias, full batch, to the optimum) it is the
    standardised logistic regression the issue's probes ran in scikit-learn.

`encoder_attentive`: on the frames of every hidden state instead of their statistics, (B, L + 1, S, D)
    (`features.EncoderFrames`: pairs of frames averaged, 25 a second; frames past a clip's own are
    zeros): each layer's channels standardised over training frames (`FrameStandardizer`, as the
    pipeline's normaliser does for `encoder_head`), each frame normalised (a LayerNorm without weights
    over D), a learned softmax-weighted sum
    of the layers frame by frame, attentive statistics pooling (Okabe et al. 2018: a small MLP scores
    each frame, softmax over the clip's own frames, weighted mean and weighted std), then the MLP of
    `encoder_head`. With `finetune_blocks` = n > 0 it holds trainable copies of the encoder's top n
    blocks (and its final LayerNorm), fed by hidden state L - n: trained on cached frames, the frozen
    encoder never runs below them again, and at inference the pipeline's encoder runs blocks 1 .. L - n
    only (`reads`). The copies start from the pretrained weights (`load_encoder_blocks`) and are
    saved in the pipeline's safetensors: OpenAI's Whisper weights, MIT licence.

Letters: B batch, L encoder blocks, S frames, D width, K classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import build, register_model
from .whisper_block import LAYER_NORM_EPS, Block

VAR_FLOOR = 1e-6  # weighted variance floor before the square root (a clip of one frame has none)


@dataclass(frozen=True)
class EncoderHeadConfig:
    n_classes: int = 8  # classes to tell apart
    input_shape: tuple[int, ...] = (7, 2, 512)  # (L + 1, 2, D): Whisper base's stem + 6 blocks, mean and std, width
    layers: tuple[int, ...] | None = None  # the hidden states used (0 = stem); None: all
    per_clip_norm: bool = True  # standardise each layer's mean and std vectors over D within the clip
    hidden: int = 256  # MLP width; 0 makes the head linear after the layer sum
    dropout: float = 0.3  # before each Linear


def classifier(dims: int, hidden: int, dropout: float, n_classes: int) -> nn.Sequential:
    """Dropout, Linear dims -> hidden, GELU, Dropout, Linear -> K (hidden 0: Dropout, Linear dims -> K)."""
    mlp: list[nn.Module] = [nn.Dropout(dropout)]
    if hidden:
        mlp += [nn.Linear(dims, hidden), nn.GELU(), nn.Dropout(dropout)]
        dims = hidden
    return nn.Sequential(*mlp, nn.Linear(dims, n_classes))


class EncoderHead(nn.Module):
    """(B, L + 1, 2, D) pooled statistics -> (B, K): per-clip norm, softmax-weighted layer sum, MLP."""

    def __init__(self, cfg: EncoderHeadConfig):
        super().__init__()
        self.config = cfg
        n_states, _, width = cfg.input_shape
        self.layers = list(cfg.layers) if cfg.layers is not None else list(range(n_states))
        self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))  # softmax -> layer weights
        self.norm = nn.LayerNorm(width, elementwise_affine=False) if cfg.per_clip_norm else nn.Identity()
        self.mlp = classifier(2 * width, cfg.hidden, cfg.dropout, cfg.n_classes)

    def layer_weights(self) -> torch.Tensor:
        """The learned weight of each used layer (sums to 1)."""
        return self.layer_logits.softmax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x[:, self.layers])  # (B, L', 2, D)
        x = torch.einsum("blsd,l->bsd", x, self.layer_weights())  # (B, 2, D)
        return self.mlp(x.flatten(1))  # (B, K)


@dataclass(frozen=True)
class EncoderEnsembleConfig(EncoderHeadConfig):
    members: int = 5  # encoder_heads trained side by side, their probabilities averaged


class EncoderEnsemble(nn.Module):
    """(B, L + 1, 2, D) -> (B, M, K) logits per member in training, (B, K) log mean probability otherwise."""

    def __init__(self, cfg: EncoderEnsembleConfig):
        super().__init__()
        if cfg.members < 1:
            raise ValueError(f"members must be at least 1, not {cfg.members}")
        self.config = cfg
        member = EncoderHeadConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(EncoderHeadConfig)})
        self.heads = nn.ModuleList(EncoderHead(member) for _ in range(cfg.members))
        self.layers = self.heads[0].layers  # the members read the same states: no block above them runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([h(x) for h in self.heads], 1)  # (B, M, K)
        if self.training:
            return logits
        return logits.log_softmax(-1).logsumexp(1) - math.log(len(self.heads))  # log of the mean probability


def frame_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, L + 1, S, D) encoder frames -> (B, S) True for a clip's own frames: padding is zeros in every
    row, a clip's own frame never is in row 0 (`WhisperEncoder.frame_states`)."""
    return x[:, 0].abs().amax(-1) > 0


class FrameStandardizer(nn.Module):
    """(B, L', S, D) frames, mask (B, S) -> each (layer, channel) standardised over the batch's own frames
    in training, over running averages of those at inference (BatchNorm without weights, padding not
    counted): what the pipeline's normaliser does for `encoder_head`, here inside the head because
    fine-tuned blocks need the encoder's own scale. At inference a clip's answer depends on it alone."""

    def __init__(self, n_layers: int, width: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(n_layers, width))
        self.register_buffer("running_var", torch.ones(n_layers, width))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            w = mask[:, None, :, None].to(h.dtype)  # (B, 1, S, 1)
            n = w.sum()  # frames in the batch
            mean = (h * w).sum((0, 2)) / n  # (L', D)
            var = ((h - mean[:, None]).square() * w).sum((0, 2)) / n
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / (n - 1).clamp(min=1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (h - mean[:, None]) / (var[:, None] + self.eps).sqrt()


class AttentiveStatsPool(nn.Module):
    """(B, S, D) frames and their mask (B, S) -> (B, 2D): the weighted mean and weighted std over each
    clip's own frames, the weights a softmax of scores from a small MLP (Okabe et al. 2018)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, S): padding never chosen
        a = e.softmax(-1)[:, :, None]  # (B, S, 1), zero on padding
        mean = (a * h).sum(1)  # (B, D)
        var = (a * (h - mean[:, None]).square()).sum(1)  # (B, D)
        return torch.cat([mean, var.clamp(min=VAR_FLOOR).sqrt()], dim=-1)  # (B, 2D)


@dataclass(frozen=True)
class EncoderAttentiveConfig:
    n_classes: int = 8  # classes to tell apart
    input_shape: tuple[int, ...] = (7, 0, 512)  # (L + 1, S, D): Whisper base's stem + 6 blocks, frames (any), width
    layers: tuple[int, ...] | None = None  # the hidden states summed (0 = stem); None: all
    standardize: bool = True  # standardise each layer's channels over training frames (FrameStandardizer)
    per_frame_norm: bool = True  # then standardise each frame of each layer over D
    attention: int = 128  # hidden units of the attention scorer
    hidden: int = 256  # MLP width; 0 makes the classifier linear
    dropout: float = 0.3  # before each Linear of the classifier
    finetune_blocks: int = 0  # trainable copies of the encoder's top n blocks, fed by hidden state L - n
    heads: int = 8  # attention heads of those blocks (the encoder's)
    ffn: int = 2048  # MLP units of those blocks (the encoder's)
    finetune_lr_scale: float = 0.05  # their learning rate, as a fraction of the training lr


class EncoderAttentive(nn.Module):
    """(B, L + 1, S, D) encoder frames -> (B, K): per-frame norm, softmax-weighted layer sum, attentive
    statistics pooling, MLP; optionally the top blocks fine-tuned (see the module)."""

    def __init__(self, cfg: EncoderAttentiveConfig):
        super().__init__()
        self.config = cfg
        n_states, _, width = cfg.input_shape
        n = cfg.finetune_blocks
        if not 0 <= n < n_states:
            raise ValueError(f"finetune_blocks must be 0 .. {n_states - 1}, not {n}")
        self.layers = list(cfg.layers) if cfg.layers is not None else list(range(n_states))
        self.below = n_states - 1 - n  # the last hidden state read from the input; the blocks above are ours
        self.reads = sorted({i for i in self.layers if i <= self.below} | ({self.below} if n else set()))
        self.blocks = nn.ModuleList(Block(width, cfg.heads, cfg.ffn) for _ in range(n))
        self.ln_post = nn.LayerNorm(width, eps=LAYER_NORM_EPS) if n else None  # the encoder's final LayerNorm
        self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))  # softmax -> layer weights
        self.standardize = FrameStandardizer(len(self.layers), width) if cfg.standardize else None
        self.norm = nn.LayerNorm(width, elementwise_affine=False) if cfg.per_frame_norm else nn.Identity()
        self.pool = AttentiveStatsPool(width, cfg.attention)
        self.mlp = classifier(2 * width, cfg.hidden, cfg.dropout, cfg.n_classes)

    def layer_weights(self) -> torch.Tensor:
        """The learned weight of each used layer (sums to 1)."""
        return self.layer_logits.softmax(0)

    @torch.no_grad()
    def load_encoder_blocks(self, encoder: nn.Module) -> "EncoderAttentive":
        """Start the fine-tuned blocks and final LayerNorm from the encoder's own (a module with
        `.blocks` and `.ln_post`, e.g. `voxemo.encoders.WhisperEncoder`)."""
        for mine, theirs in zip(self.blocks, encoder.blocks[self.below :]):
            mine.load_state_dict(theirs.state_dict())
        if self.ln_post is not None:
            self.ln_post.load_state_dict(encoder.ln_post.state_dict())
        return self

    def param_groups(self) -> list[dict]:
        """The parameters with their learning-rate scale: the head's at 1, the fine-tuned blocks' lower."""
        tuned = {id(p) for m in (self.blocks, self.ln_post) if m is not None for p in m.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in tuned], "lr_scale": 1.0}]
        if tuned:
            groups.append({"params": [p for p in self.parameters() if id(p) in tuned],
                           "lr_scale": self.config.finetune_lr_scale})
        return groups

    def states(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The used hidden states (B, L', S, D) float32: read from the input, the top ones run by the
        fine-tuned blocks (their padding frames are not zero)."""
        if not self.blocks:
            return pick(x, self.layers).float()  # cached frames may be float16
        h, key_mask = x[:, self.below].float(), mask[:, None, None, :]  # (B, S, D), (B, 1, 1, S)
        tops = []
        for i, block in enumerate(self.blocks):
            h = block(h, key_mask)
            tops.append(self.ln_post(h) if i == len(self.blocks) - 1 else h)
        return pick(torch.cat([x[:, : self.below + 1].float(), torch.stack(tops, dim=1)], dim=1), self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = frame_mask(x)  # (B, S)
        h = self.states(x, mask)  # (B, L', S, D)
        if self.standardize is not None:
            h = self.standardize(h, mask)
        h = self.norm(h)
        h = torch.einsum("blsd,l->bsd", h, self.layer_weights()) * mask[:, :, None]  # (B, S, D), padding zero
        return self.mlp(self.pool(h, mask))  # (B, K)


def pick(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """x[:, rows], a view (no copy) when the rows are consecutive."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return x[:, rows[0] : rows[-1] + 1]
    return x[:, rows]


@dataclass(frozen=True)
class EncoderProbeConfig:
    n_classes: int = 8  # classes to tell apart
    input_shape: tuple[int, ...] = (7, 2, 512)  # (L + 1, 2, D)
    layers: tuple[int, ...] | None = None  # the hidden states used; None: all


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

    def param_groups(self) -> list[dict]:
        """The weights under the recipe's L2, the bias (a logistic regression's intercept) free of it."""
        return [{"params": [self.linear.weight], "lr_scale": 1.0},
                {"params": [self.linear.bias], "lr_scale": 1.0, "weight_decay": 0.0}]


@register_model
def encoder_head(**kw):
    """Ours: per-clip normalised layer statistics, learned layer weights, small MLP."""
    return build(EncoderHeadConfig, EncoderHead, {}, kw)


@register_model
def encoder_ensemble(**kw):
    """Ours: five encoder_heads trained side by side, their probabilities averaged (a deep ensemble)."""
    return build(EncoderEnsembleConfig, EncoderEnsemble, {}, kw)


@register_model
def encoder_probe(**kw):
    """Reference: a linear probe (logistic regression) on every layer's mean and std."""
    return build(EncoderProbeConfig, EncoderProbe, {}, kw)


@register_model
def encoder_attentive(**kw):
    """Ours: per-frame normalised layer frames, learned layer weights, attentive statistics pooling, MLP;
    optionally the encoder's top blocks fine-tuned (finetune_blocks)."""
    return build(EncoderAttentiveConfig, EncoderAttentive, {}, kw)
