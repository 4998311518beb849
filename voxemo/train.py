"""The training loop: one `fit` for every model.

Optimisers Adam, AdamW, RMSprop and SGD (momentum, Keras-style decay); warm-up and cosine / one-cycle /
step schedules; class weights or random oversampling; gradient clipping; label smoothing; mixup;
waveform and SpecAugment augmentation of training batches only; early stopping and best-checkpoint
selection on the validation split (never the test fold); a fixed seed gives the same weights twice;
a run that is killed resumes from its last finished epoch and ends where an uninterrupted run would
(the checkpoint holds weights, optimiser state, RNG state, history and counters, in safetensors and
JSON: no pickle).

Letters: B batch, N samples, C windows per clip, K classes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .augment import AugmentConfig, Augmenter
from . import config
from .evaluate import classification_metrics
from .pipeline import Pipeline

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("none", "cosine", "onecycle", "step")
# glibc's malloc gives blocks above a threshold (128 kB, rising to 32 MB at most) their own mmap and
# hands them back to the system when freed; a training step allocates and frees activations of tens to
# hundreds of MB, so each was page-faulted in afresh, zero-filled by the kernel, at every step, and
# memory-bound ops (BatchNorm, ReLU, MaxPool, Dropout) paid for that more than for their own work.
# Below this size, blocks stay in the heap.
MALLOC_MMAP_THRESHOLD = 1 << 30
MALLOC_TRIM_THRESHOLD = (1 << 31) - 1  # freed heap memory is kept for the next step, not trimmed


@dataclass
class TrainConfig:
    """How a model is trained; written to every run's config.json."""

    optimizer: str = "adamw"  # one of OPTIMIZERS
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # L2 (adam, rmsprop, sgd) or decoupled (adamw)
    momentum: float = 0.9  # sgd and rmsprop
    lr_decay: float = 0.0  # Keras-style decay per step: lr / (1 + lr_decay * step) (seed 004_d4c4: 1e-6)
    schedule: str = "none"  # one of SCHEDULES; "onecycle" = linear warm-up then cosine to zero
    warmup_epochs: float = 0.0  # linear warm-up (cosine, onecycle)
    step_size: int = 30  # epochs between lr * step_gamma ("step")
    step_gamma: float = 0.1
    epochs: int = 40  # at most this many epochs
    batch_size: int = 32  # clips per step
    patience: int | None = 10  # stop after this many epochs without a better validation score; None never
    # 0: keep the best validation epoch's weights. N > 0: no choice by validation (every epoch runs) and
    # the mean of the last N epochs' weights is kept (stochastic weight averaging, Izmailov et al. 2018):
    # an epoch chosen by two validation speakers moves cross-corpus UA by several points (RESULTS.md)
    average_last: int = 0
    monitor: str = "val_ua"  # "val_ua", "val_acc" (higher is better) or "val_loss" (lower is better)
    class_weights: bool = False  # weight the loss by inverse class frequency
    oversample: bool = False  # draw smaller classes more often, to balance each epoch (seed 004_d4c4)
    grad_clip: float | None = None  # clip the gradient norm to this
    label_smoothing: float = 0.0
    seed: int = 0  # one seed for initialisation, batch order, augmentation and dropout
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training batches only
    eval_batch_size: int = 128
    # before each validation, every BatchNorm's running statistics recomputed over the training
    # inputs with dropout off ("precise BN"): statistics gathered while dropout is on do not hold
    # when it is off (Li et al. 2019, variance shift), and left seed004's TD-CNN + LSTM predicting
    # one class in evaluation while it learned in training (RESULTS.md)
    recompute_bn: bool = False

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = config.from_dict(AugmentConfig, self.augment)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.monitor not in ("val_ua", "val_acc", "val_loss"):
            raise ValueError(f"monitor must be val_ua, val_acc or val_loss, not {self.monitor!r}")
        if not 0 <= self.average_last <= self.epochs:
            raise ValueError(f"average_last must be between 0 and epochs ({self.epochs}), not {self.average_last}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Unknown keys, here or in `augment`, are a ConfigError naming them."""
        return config.from_dict(cls, d)


@dataclass
class History:
    """Per-epoch records and the epoch whose weights were kept."""

    epochs: list[dict] = field(default_factory=list)  # {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_ua", "lr"}
    best_epoch: int = -1
    best_score: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0  # wall time of the epochs so far, over every sitting of a resumed run
    resumed_seconds: float = 0.0  # of which earlier sittings (what the checkpoint held when this one began)

    def curves(self) -> dict:
        """Lists per key, as report.write_run draws them; a run without validation speakers has no val_ keys."""
        keys = ("train_loss", "train_acc", "val_loss", "val_acc", "val_ua")
        return {k: [e[k] for e in self.epochs] for k in keys if all(k in e for e in self.epochs)}


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep large freed blocks for reuse (MALLOC_MMAP_THRESHOLD) instead of mapping
    fresh pages for every activation of every step; the numbers do not change, only where the memory
    comes from. Process-wide, idempotent; False (and nothing done) where malloc is not glibc's."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The model's parameters, each group at cfg.lr times its "lr_scale": `model.param_groups()` when the
    model has them (a head fine-tuning an encoder's blocks at a lower rate), else one group at scale 1."""
    groups = model.param_groups() if hasattr(model, "param_groups") else [{"params": list(model.parameters()), "lr_scale": 1.0}]
    return [dict(g, lr=cfg.lr * g["lr_scale"]) for g in groups]


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at a global step; a pure function, so resuming needs no state."""
    epoch = step / steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    f = 1.0
    if cfg.schedule in ("cosine", "onecycle"):
        warm = cfg.warmup_epochs * steps_per_epoch
        if step < warm:
            f = (step + 1) / warm
        else:
            f = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            if cfg.schedule == "cosine":
                f = max(f, 0.01)
    elif cfg.schedule == "step":
        f = cfg.step_gamma ** int(epoch // cfg.step_size)
    if cfg.lr_decay:
        f /= 1 + cfg.lr_decay * step
    return f


def class_weight_tensor(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse class frequency, 1 on average over the clips of a balanced set. A class without training
    clips (a label set shared across corpora: EmoDB has no "surprised") weighs 0: otherwise label
    smoothing's share of it would be multiplied by the largest weight of all and train the model
    towards the one class it never heard."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    present = counts > 0
    return torch.where(present, counts.sum() / (int(present.sum()) * counts.clamp_min(1)), torch.zeros(()))


def epoch_order(labels: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Indices into the training set for one epoch: shuffled, or drawn class-balanced (oversampling)."""
    n = labels.shape[0]
    if not cfg.oversample:
        return torch.randperm(n, generator=gen)
    weights = (1.0 / torch.bincount(labels).float())[labels]
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def running_mean(mean: dict | None, state: dict, n: int) -> dict:
    """The mean of n + 1 state dicts from the mean of the first n (None when n = 0) and one more; an
    integer buffer (BatchNorm's batch count) takes the newest value."""
    if mean is None or n == 0:
        return copy.deepcopy(state)
    return {k: mean[k] + (v - mean[k]) / (n + 1) if v.is_floating_point() else v.clone() for k, v in state.items()}


def normalised(pipe: Pipeline, x: torch.Tensor, precomputed: bool = False) -> torch.Tensor:
    """The model's input for a batch: `pipe.features(waves)`, or with `precomputed` the front-end's
    output computed beforehand (a frozen encoder's cached statistics) through the normaliser only."""
    if not precomputed:
        return pipe.features(x)
    with torch.no_grad():
        return pipe.normalizer(trimmed(pipe, x))


def trimmed(pipe: Pipeline, x: torch.Tensor) -> torch.Tensor:
    """A batch of precomputed front-end outputs, cut to its longest clip when they are frames padded
    past each clip's own (`EncoderFrames.trim`); others as they are."""
    trim = getattr(pipe.frontend.features, "trim", None)
    return trim(x) if trim is not None else x


def feature_batches(pipe: Pipeline, waves: torch.Tensor, batch_size: int,
                    precomputed: bool = False) -> Iterator[torch.Tensor]:
    """Normalised features of `waves` (or of precomputed front-end outputs), batch by batch, in eval mode."""
    pipe.eval()
    return (normalised(pipe, waves[i : i + batch_size], precomputed) for i in range(0, waves.shape[0], batch_size))


@torch.no_grad()
def recompute_batchnorm(pipe: Pipeline, batches: Iterable[torch.Tensor], dropout: bool = False) -> bool:
    """Every BatchNorm of the model gets running statistics recomputed over `batches` of normalised
    training features, each batch weighted equally, with the model otherwise in eval mode (dropout
    off): "precise BN" (Wu & Johnson 2021). `dropout` keeps the model in training mode instead, as
    training gathers them (scripts/diagnose_batchnorm.py). False when the model has no BatchNorm."""
    norms = [m for m in pipe.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    for feats in batches:  # a lazy batch may put the pipeline in eval mode (feature_batches): set it per batch
        pipe.train(dropout)
        for m in norms:
            m.train()
        pipe.logits(feats)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    pipe.eval()
    return True


@torch.inference_mode()
def evaluate_features(pipe: Pipeline, batches: Iterable[torch.Tensor], labels: torch.Tensor | None = None,
                      class_weights: torch.Tensor | None = None) -> tuple[np.ndarray, float | None]:
    """Validation during training: clip probabilities (B, K) of normalised features given batch by
    batch in the order of `labels` (the training crops, so features can be kept across epochs), and
    with labels the mean cross-entropy loss."""
    pipe.eval()
    probs, loss_sum, seen = [], 0.0, 0
    for feats in batches:
        p = pipe.logits(feats).softmax(-1)
        p = p.mean(1) if pipe.per_window else p  # (B, K)
        probs.append(p)
        if labels is not None:
            y = labels[seen : seen + p.shape[0]]
            loss_sum += float(nn.functional.nll_loss(p.clamp_min(1e-8).log(), y, weight=class_weights, reduction="sum"))
        seen += p.shape[0]
    probs = torch.cat(probs)
    return probs.numpy(), (loss_sum / seen if labels is not None else None)


VAL_CACHE_BYTES = 512 * 2**20  # validation features up to this size are computed once per run, not per epoch
TRAIN_CACHE_BYTES = 2 * 2**30  # training features (noisy copies included) up to this size are computed once per run


def frontend_outputs(pipe: Pipeline, waves: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The front-end's output for every waveform (no normalisation), in batches: (N, ...)."""
    with torch.no_grad():
        return torch.cat([pipe.frontend(waves[i : i + batch_size]) for i in range(0, waves.shape[0], batch_size)])


def features_fit(pipe: Pipeline, waves: torch.Tensor, limit: int) -> bool:
    """Whether the front-end's outputs of `waves` fit in `limit` bytes."""
    if limit <= 0 or waves.shape[0] == 0:
        return False
    with torch.no_grad():
        one = pipe.frontend(waves[:1])
    return one.element_size() * one.numel() * waves.shape[0] <= limit


def validation_batches(pipe: Pipeline, waves: torch.Tensor, batch_size: int,
                       precomputed: bool = False) -> Callable[[], Iterable[torch.Tensor]]:
    """The validation features batch by batch, each epoch: computed once and kept when they fit in
    VAL_CACHE_BYTES (the front-end and the normaliser do not change while the model trains), else
    recomputed per epoch. Same batches, same numbers either way."""
    one = next(feature_batches(pipe, waves[:1], 1, precomputed))
    if one.element_size() * one.numel() * waves.shape[0] > VAL_CACHE_BYTES:
        return lambda: feature_batches(pipe, waves, batch_size, precomputed)
    kept = list(feature_batches(pipe, waves, batch_size, precomputed))
    return lambda: iter(kept)


def fit(
    pipe: Pipeline,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
    precomputed: bool = False,
    feature_memory: int = TRAIN_CACHE_BYTES,
) -> History:
    """Train `pipe` in place on train = (waves (B, N), labels (B,)); keep the best epoch on `val`.

    precomputed: train and val hold the front-end's outputs computed beforehand (a frozen encoder's
        statistics, once per clip) instead of waveforms; waveform and spectrogram augmentations
        are then refused (make augmented copies before the front-end instead), mixup works.
    feature_memory: when no augmentation changes the waveforms from epoch to epoch (SpecAugment and
        mixup work on features; fixed noisy copies are made once by `Augmenter.expand`), the
        training clips' features, copies included, are computed once per run and normalised once,
        if they fit in this many bytes; else, or with 0, every batch computes its own from the
        waveforms. The same seed gives the same weights either way (tests/test_train.py).
    checkpoint_dir: where `last.safetensors` / `last.json` are written after every epoch; with
        `resume` a run continues from there (and a finished run returns its history at once).
    on_epoch: called with each epoch's record (the CLI draws its progress bar from it).
    stop_after: end after this many epochs of this call, as a kill would (for tests of resume).
    Without `val`, the last epoch is kept and early stopping is off; with `cfg.average_last` N > 0,
    the mean of the last N epochs' weights is kept (BatchNorm statistics recomputed for it) and `val`
    only reports.
    """
    n_classes = len(pipe.labels)
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    augmenter = Augmenter(cfg.augment)
    if precomputed and augmenter.changes_waves_or_spectrograms():
        raise ValueError("training on precomputed features: waveform and spectrogram augmentations cannot apply "
                         "(noise, shift, gain, speed, SpecAugment); embed augmented copies before training instead")
    # Noisy copies (seed 003_2f41) are made once, from the training clips only, the same on resume.
    x_train, y_train = augmenter.expand(*train, torch.Generator().manual_seed(cfg.seed))
    # Features once per run: the front-end and, once fitted, the normaliser do not change while the model
    # trains. Precomputed inputs (a frozen encoder's statistics) are front-end outputs already.
    once = precomputed or (not augmenter.changes_waves() and features_fit(pipe, x_train, feature_memory))
    if once and not precomputed:
        x_train = frontend_outputs(pipe, x_train, cfg.eval_batch_size)  # (N', ...): clips, then their noisy copies
    weights = class_weight_tensor(y_train, n_classes) if cfg.class_weights else None
    steps_per_epoch = math.ceil(y_train.shape[0] / cfg.batch_size)

    ckpt = Checkpoint(Path(checkpoint_dir)) if checkpoint_dir else None
    history, best_state, bad_epochs, start = History(), None, 0, 0
    if ckpt is not None and resume and ckpt.exists():
        for statistic in pipe.normalizer.buffers():  # overwritten by the checkpoint (PassThrough holds none)
            statistic.zero_()
        optimizer = make_optimizer(parameter_groups(pipe.model, cfg), cfg)
        history, best_state, bad_epochs, start, finished = ckpt.load(pipe, optimizer)
        if finished:
            pipe.load_state_dict(best_state)
            return history
    else:
        if once:  # the clips only, not their copies, as fit_normalizer from waveforms
            pipe.normalizer.fit(x_train[: train[0].shape[0]])
        else:
            fit_normalizer(pipe, train[0], cfg.eval_batch_size)
        optimizer = make_optimizer(parameter_groups(pipe.model, cfg), cfg)
    if once:
        with torch.no_grad():
            x_train = torch.cat([pipe.normalizer(x_train[i : i + cfg.eval_batch_size])
                                 for i in range(0, x_train.shape[0], cfg.eval_batch_size)])
    higher_better = cfg.monitor != "val_loss"
    averaging = cfg.average_last > 0
    val_batches = validation_batches(pipe, val[0], cfg.eval_batch_size, precomputed) if val is not None else None

    def training_batches() -> Iterator[torch.Tensor]:
        """The training inputs' normalised features, in order (for BatchNorm statistics)."""
        if once:
            return (trimmed(pipe, x_train[i : i + cfg.batch_size]) for i in range(0, x_train.shape[0], cfg.batch_size))
        return feature_batches(pipe, x_train, cfg.batch_size, precomputed)

    def validate() -> dict:
        probs, vloss = evaluate_features(pipe, val_batches(), val[1], weights)
        m = classification_metrics(val[1].numpy(), probs.argmax(1), list(range(n_classes)))
        return {"val_loss": vloss, "val_acc": m["wa"], "val_ua": m["ua"]}

    history.resumed_seconds = history.seconds
    t_sitting = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = epoch_order(y_train, cfg, gen)
        pipe.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            if idx.numel() == 0:
                break
            y = y_train[idx]
            if once:  # normalised features, computed before the first epoch
                feats = augmenter.augment_features(trimmed(pipe, x_train[idx]), gen)
            else:
                feats = augmenter.augment_features(pipe.features(augmenter.augment_waves(x_train[idx], gen)), gen)
            target = nn.functional.one_hot(y, n_classes).float()
            if cfg.augment.mixup_alpha:
                feats, target = augmenter.mix(feats, target, gen)
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(cfg, epoch * steps_per_epoch + b, steps_per_epoch)
            logits = pipe.logits(feats)  # (B, K), or (B, C, K): per window, or per member of an ensemble
            if logits.dim() == 3:
                target = target[:, None].expand(-1, logits.shape[1], -1)
            loss = soft_cross_entropy(logits, target, weights, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(pipe.model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * y.shape[0]
            probs = logits.detach().softmax(-1)
            correct += int(((probs.mean(1) if probs.dim() == 3 else probs).argmax(-1) == y).sum())
            seen += y.shape[0]
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "lr": optimizer.param_groups[0]["lr"]}
        if cfg.recompute_bn:
            recompute_batchnorm(pipe, training_batches())
        if val is not None:
            record.update(validate())
            score = record[cfg.monitor]
            better = history.best_score is None or (score > history.best_score if higher_better else score < history.best_score)
        else:
            better, score = True, None
        if averaging:  # the last epoch until the window opens, then the running mean over it
            history.best_epoch, history.best_score = epoch, score
            best_state = running_mean(best_state, pipe.state_dict(), max(0, epoch - (cfg.epochs - cfg.average_last)))
        elif better:
            history.best_epoch, history.best_score, bad_epochs = epoch, score, 0
            best_state = copy.deepcopy(pipe.state_dict())
        else:
            bad_epochs += 1
        history.epochs.append(record)
        history.seconds = history.resumed_seconds + time.perf_counter() - t_sitting
        if on_epoch:
            on_epoch(record)
        done = epoch + 1 == cfg.epochs or (not averaging and val is not None and cfg.patience is not None
                                           and bad_epochs >= cfg.patience)
        history.stopped_early = done and epoch + 1 < cfg.epochs
        if averaging and done:  # the averaged weights, their own BatchNorm statistics and validation score
            pipe.load_state_dict(best_state)
            recompute_batchnorm(pipe, training_batches())
            best_state = copy.deepcopy(pipe.state_dict())
            if val is not None:
                history.best_score = validate()[cfg.monitor]
        if ckpt is not None:
            ckpt.save(pipe, optimizer, history, best_state, bad_epochs, epoch + 1, done)
        if done or (stop_after is not None and epoch + 1 - start >= stop_after):
            break
    pipe.load_state_dict(best_state)
    return history


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                       smoothing: float) -> torch.Tensor:
    """Cross-entropy against soft targets (mixup), optionally class-weighted and smoothed."""
    k = logits.shape[-1]
    if smoothing:
        target = target * (1 - smoothing) + smoothing / k
    logp = logits.log_softmax(-1)
    per = -(target * logp)
    if weights is not None:
        per = per * weights
    return per.sum(-1).mean()


@torch.no_grad()
def fit_normalizer(pipe: Pipeline, waves: torch.Tensor, batch_size: int) -> None:
    """Normaliser statistics from the training clips (no augmentation)."""
    pipe.normalizer.fit(frontend_outputs(pipe, waves, batch_size))


class Checkpoint:
    """`last.safetensors` (weights, best weights, optimiser tensors, RNG) + `last.json` (the rest)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.tensors = folder / "last.safetensors"
        self.meta = folder / "last.json"

    def exists(self) -> bool:
        return self.tensors.is_file() and self.meta.is_file()

    def save(self, pipe, optimizer, history: History, best_state, bad_epochs: int, next_epoch: int, finished: bool):
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.contiguous() for k, v in pipe.state_dict().items()}
        tensors.update({f"best.{k}": v.contiguous() for k, v in best_state.items()})
        opt = optimizer.state_dict()
        opt_scalars = {}
        for i, st in opt["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{i}.{k}"] = v.contiguous()
                else:
                    opt_scalars[f"{i}.{k}"] = v
        tensors["rng"] = torch.get_rng_state()
        meta = {
            "next_epoch": next_epoch, "finished": finished, "bad_epochs": bad_epochs,
            "history": dataclasses.asdict(history),
            "param_groups": opt["param_groups"], "optim_scalars": opt_scalars,
        }
        for path, write in ((self.tensors, lambda p: save_file(tensors, str(p))),
                            (self.meta, lambda p: p.write_text(json.dumps(meta)))):
            tmp = path.with_suffix(path.suffix + ".tmp")
            write(tmp)
            os.replace(tmp, path)

    def load(self, pipe, optimizer):
        from safetensors.torch import load_file

        t = load_file(str(self.tensors))
        meta = json.loads(self.meta.read_text())
        pipe.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in t.items() if k.startswith("best.")}
        state: dict = {}
        for k, v in t.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        for k, v in meta["optim_scalars"].items():
            i, name = k.split(".", 1)
            state.setdefault(int(i), {})[name] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(t["rng"])
        h = meta["history"]
        history = History(h["epochs"], h["best_epoch"], h["best_score"], h["stopped_early"], h.get("seconds", 0.0))
        return history, best, meta["bad_epochs"], meta["next_epoch"], meta["finished"]
