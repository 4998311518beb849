"""Model registry (timm-style): `@register_model` on tiny functions that only fix hyper-parameters.

Every model maps the features its front-end makes to logits (B, K) (an ensemble, in training, one
set per member: (B, M, K)). Each registered function takes
keyword overrides of its config dataclass (`n_classes` and `input_shape` among them) and returns a
module with `.config` (that dataclass) and `.name`, so `create_model(name, **asdict(model.config))`
rebuilds the same architecture: that is how a saved pipeline is loaded.

Models are architecture only: they import torch and this registry, nothing of features or
training. What each paper feeds its model and how it trains it lives in `voxemo.papers`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .. import config


@dataclass(frozen=True)
class Entry:
    """What the registry knows of one model."""

    name: str  # the registered function's name: the key of create_model and the CLI's --model
    fn: Callable[..., nn.Module]  # fn(**overrides) -> model with .config
    doc: str = ""  # the function's docstring, for `voxemo models`


_REGISTRY: dict[str, Entry] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register `fn(**overrides) -> nn.Module` under its own name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = Entry(fn.__name__, fn, (fn.__doc__ or "").strip())
    return fn


def list_models() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> Entry:
    """The registry's Entry for `name`; ValueError naming the known models if there is none."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; `None` overrides are ignored so CLI defaults never shadow the model's.

    Unknown names are a ValueError listing the known ones; unknown config fields a TypeError.
    """
    entry = model_entry(name)
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if "input_shape" in kwargs:
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    model = entry.fn(**kwargs)
    model.name = name
    return model


def build(config_cls, module_cls, defaults: dict, overrides: dict) -> nn.Module:
    """Config from the registered defaults and the overrides (unknown keys are a ConfigError), then the module."""
    cfg = config.from_dict(config_cls, {**defaults, **overrides})
    for f in dataclasses.fields(cfg):  # JSON gives lists back where the config holds tuples
        object.__setattr__(cfg, f.name, _tuples(getattr(cfg, f.name)))
    return module_cls(cfg)


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def keras_lstm_init(lstm: nn.LSTM) -> nn.LSTM:
    """Give an nn.LSTM the initial weights a Keras LSTM starts from, which the papers' models were
    trained from: Glorot-uniform input weights, orthogonal recurrent weights (per gate), zero biases
    but the forget gate's, which starts at 1 (Keras' unit_forget_bias). PyTorch's own default,
    uniform in +-1/sqrt(H) with random biases, left the seed-004 LSTMs at chance under the paper's
    SGD. Gate order is PyTorch's (input, forget, cell, output)."""
    h = lstm.hidden_size
    for name, w in lstm.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(w)
        elif name.startswith("weight_hh"):
            for g in range(4):
                nn.init.orthogonal_(w.data[g * h:(g + 1) * h])
        elif name.startswith("bias_ih"):
            nn.init.zeros_(w)
            nn.init.ones_(w.data[h:2 * h])
        elif name.startswith("bias_hh"):
            nn.init.zeros_(w)
    return lstm


class Dropout(nn.Dropout):
    """nn.Dropout, the same math with a cheaper mask: each value is kept with probability 1 - p (a
    uniform draw at or above p; float32 draws put the rate within 6e-8 of it) and scaled by
    1 / (1 - p), the others zeroed; the gradient goes through the same mask. nn.Dropout draws its
    mask with `bernoulli_`, which on CPU costs several times `rand_like` (the torch profiler puts it
    first in cnn2d_mfcc's training step, on the first layer's 16 x 128 x 40 x 301 activations). The
    masks come from torch's generator, so a seed still fixes them (not the same masks as nn.Dropout's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p in (0.0, 1.0):
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


def channels_last(module: nn.Module) -> nn.Module:
    """`module` with its 4-D weights in channels-last memory layout: 2-D convolutions, BatchNorm and
    MaxPool on (N, C, H, W) run about 1.5x faster on CPU so (oneDNN's preferred layout), with the same
    numbers up to float rounding. Saved weights are made contiguous (`Pipeline.save`), so files do
    not change."""
    return module.to(memory_format=torch.channels_last)


from . import cnn, conv1d_lstm, encoder_heads, rnn, td_cnn, transformer, voxemo_net  # noqa: E402,F401  (registration)
