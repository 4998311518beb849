"""A `Pipeline` goes from waveforms to named classes: Frontend -> Normalizer -> Model -> probabilities.

Saved as two files side by side, and loading never runs code:
- `<name>.safetensors`: the model's weights and the normaliser's statistics;
- `<name>.json`: audio settings (the one preparation of a clip, `audio.AudioSettings`, and the only
  place the sample rate is stored), front-end, model name and config, label names, task, training
  settings, protocol and metrics, voxemo version.

Letters: B batch, N samples, C windows per clip, F feature bins, T frames, W frames per window,
K classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from typing import Callable, Sequence

from . import __version__
from .audio import SAMPLE_RATE, AudioSettings
from .features import ENCODER_KINDS, Frontend, FrontendConfig

FORMAT = "voxemo-pipeline/1"
ENCODER_NAME = "whisper-base"  # the pretrained encoder a "whisper" or "whisper_frames" front-end runs (voxemo.encoders)


class Normalizer(nn.Module):
    """Per-feature-bin standardisation with statistics from training data only.

    Feature maps (B, F, T) and windows (B, C, F, W) are standardised per bin F, and so is a vector a
    clip (B, F) when the normaliser has F bins; a 1-D series over time (B, T) with one mean and std
    (a normaliser of one bin).
    """

    def __init__(self, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins))
        self.register_buffer("std", torch.ones(n_bins))

    @torch.no_grad()
    def fit(self, feats: torch.Tensor) -> "Normalizer":
        """feats: training features (B, F, T), (B, C, F, W), (B, F) or (B, T)."""
        if feats.dim() == 2 and len(self.mean) == 1:
            self.mean.fill_(feats.mean())
            self.std.fill_(feats.std().clamp_min(1e-5))
        elif feats.dim() == 2:
            self.mean.copy_(feats.mean(0))
            self.std.copy_(feats.std(0).clamp_min(1e-5))
        else:
            per_bin = feats.movedim(-2, 0).reshape(feats.shape[-2], -1)  # (F, everything else)
            self.mean.copy_(per_bin.mean(1))
            self.std.copy_(per_bin.std(1).clamp_min(1e-5))
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() == 2:
            return (f - self.mean) / self.std  # one bin broadcasts over the series; F bins over the vector
        return (f - self.mean[:, None]) / self.std[:, None]


class FeatureNormalizer(nn.Module):
    """Standardisation of every feature of a fixed-shape input (a pretrained encoder's statistics,
    (B, L + 1, 2, D)) with statistics from training data only."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(self, feats: torch.Tensor) -> "FeatureNormalizer":
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp_min(1e-5))
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std


MIN_SPEAKER_CLIPS = 5  # clips a speaker needs before their own statistics standardise them
# Samples one inference batch may hold (32 windows of 3 s): a batch of longer windows holds fewer,
# so a long recording's 30 s windows (3 a batch) bound a request's memory and let its time budget be checked
# between batches (benchmarks/service_load.py).
MAX_BATCH_SAMPLES = 32 * 3 * SAMPLE_RATE


def standardise_by_speaker(feats: torch.Tensor, speakers: Sequence[str]) -> torch.Tensor:
    """Each speaker's features (B, ...) standardised with that speaker's own mean and standard
    deviation over their clips (per feature): what is left is how a clip differs from the speaker's
    usual voice, not the voice, the microphone or the room. ValueError naming a speaker with fewer
    than MIN_SPEAKER_CLIPS clips (their statistics would be noise)."""
    if len(speakers) != feats.shape[0]:
        raise ValueError(f"{feats.shape[0]} clips but {len(speakers)} speakers")
    out = torch.empty_like(feats)
    names = np.asarray(speakers, dtype=object)
    for who in dict.fromkeys(speakers):
        rows = torch.from_numpy(np.flatnonzero(names == who))
        if len(rows) < MIN_SPEAKER_CLIPS:
            raise ValueError(f"speaker {who} has {len(rows)} clips; per-speaker normalisation needs at least "
                             f"{MIN_SPEAKER_CLIPS}")
        own = feats[rows]
        out[rows] = (own - own.mean(0)) / own.std(0).clamp_min(1e-5)
    return out


class PassThrough(nn.Module):
    """No standardisation: the frame heads normalise each frame themselves, and blocks they fine-tune
    need the encoder's own hidden states (kind "whisper_frames"). Fitting is a no-op."""

    def fit(self, feats: torch.Tensor) -> "PassThrough":
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f


class Pipeline(nn.Module):
    """Waveforms (B, N) at `audio.sample_rate` -> class probabilities (B, K).

    For a per-window model (it classifies fixed windows of a clip) the clip's probabilities are the
    mean of its windows' probabilities; `window_logits` gives the windows themselves.

    A pipeline trained with per-speaker normalisation (`speaker_norm`, encoder front-ends only)
    standardises each speaker's statistics with that speaker's own before its normaliser: it scores
    a speaker's clips together (`clip_probabilities(clips, speakers=...)`), never one clip alone.
    """

    def __init__(self, frontend: FrontendConfig, model: nn.Module, labels: list[str], *,
                 audio: AudioSettings, per_window: bool = False, task: str = "emotion",
                 meta: dict | None = None, encoder: nn.Module | None = None):
        super().__init__()
        self.frontend = Frontend(frontend, audio.sample_rate, encoder)
        if frontend.kind in ENCODER_KINDS:
            frames = frontend.kind == "whisper_frames"
            self.normalizer = PassThrough() if frames else FeatureNormalizer(self.frontend.features.output_shape)
            # the encoder states the head reads from its input: run no block above them
            used = getattr(model, "reads", getattr(model, "layers", None))
            self.frontend.features.upto = max(used) if used else None
        else:
            self.normalizer = Normalizer(1 if frontend.kind == "mean_mfcc" else self._n_bins(frontend))
        self.model = model
        self.labels = list(labels)
        self.audio = audio
        self.per_window = per_window
        self.task = task
        self.meta = dict(meta or {})  # training corpora, protocol, metrics, train config ...
        # softmax(logits / temperature): set by `calibrate` on validation speakers, saved in meta
        self.temperature = float(self.meta.get("calibration", {}).get("temperature", 1.0))

    @staticmethod
    def _n_bins(cfg: FrontendConfig) -> int:
        return {"logmel": cfg.n_mels, "mfcc": cfg.n_mfcc, "mfcc_time_mean": cfg.n_mfcc, "stft": cfg.n_fft // 2}[cfg.kind]

    @property
    def speaker_norm(self) -> bool:
        """Whether each speaker's clips are standardised with their own statistics (`standardise_by_speaker`)."""
        return bool(self.meta.get("speaker_norm", False))

    @property
    def encoder(self) -> nn.Module | None:
        """The frozen pretrained encoder of a "whisper" or "whisper_frames" front-end (None for the others)."""
        return getattr(self.frontend.features, "encoder", None)

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, N) -> normalised features: (B, F, T), (B, T), (B, C, F, W), (B, L + 1, 2, D) or (B, L + 1, S', D)."""
        with torch.no_grad():
            f = self.frontend(waves)
        return self.normalizer(f)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised features -> logits (B, K), or (B, C, K) for a per-window model (and (B, M, K) from
        an ensemble in training: one set per member)."""
        if not self.per_window:
            return self.model(feats)
        b, c = feats.shape[:2]
        return self.model(feats.flatten(0, 1)).unflatten(0, (b, c))  # (B, C, K)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        out = (self.logits(self.features(waves)) / self.temperature).softmax(-1)
        return out.mean(1) if self.per_window else out  # (B, K)

    @torch.inference_mode()
    def run(self, waves: np.ndarray) -> np.ndarray:
        """(B, N) float32 -> probabilities (B, K) as numpy, in eval mode; the torch twin of `OnnxRunner.run`."""
        self.eval()
        return self(torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))).numpy()

    @property
    def name(self) -> str:
        """The model's registered name (what `voxemo models` lists)."""
        return self.model.name

    def hear(self, clips: Sequence[np.ndarray], speakers: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities (B, K) of decoded clips (`audio.decode`) as `voxemo predict` hears them: each
        cut by `audio.windows`, its windows' probabilities averaged; a `speaker_norm` pipeline
        standardises each speaker over their clips here (`speakers`)."""
        return self.clip_probabilities([self.audio.windows(x) for x in clips], speakers=speakers)

    def clip_probabilities(self, clips: Sequence[np.ndarray], batch_size: int = 32,
                           speakers: Sequence[str] | None = None) -> np.ndarray:
        """Prepared clips (each (C, N), from `audio.prepare`) -> probabilities (B, K), each clip's
        the mean of its windows'. A `speaker_norm` pipeline needs every clip's speaker."""
        if not self.speaker_norm:
            return clip_probabilities(self.run, clips, len(self.labels), batch_size)
        if speakers is None:
            raise PipelineError("this pipeline normalises each speaker with their own statistics: it scores a "
                                "speaker's clips together and needs every clip's speaker (voxemo evaluate on a corpus)")
        return self._speaker_probabilities(clips, speakers)

    @torch.inference_mode()
    def adapt(self, clips: Sequence[np.ndarray]) -> None:
        """Refit the normaliser's statistics on decoded clips (`audio.decode`) of a new domain,
        unlabelled: each cut by `audio.windows` as `hear` cuts it, through the front-end
        (`voxemo.adapt` checks first that this pipeline can be adapted)."""
        self.eval()
        self.normalizer.fit(self._window_features([self.audio.windows(x) for x in clips]))

    def _window_features(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """Every window's front-end output (W, ...), clip by clip, of prepared clips (each (C, N))."""
        return torch.from_numpy(window_outputs(
            lambda w: self.frontend(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))).numpy(), clips))

    @torch.inference_mode()
    def _speaker_probabilities(self, clips: Sequence[np.ndarray], speakers: Sequence[str]) -> np.ndarray:
        """Every window's front-end output, standardised per speaker over their windows, then the
        normaliser and the model; a clip's probabilities are its windows' mean."""
        self.eval()
        who = [speakers[i] for i, c in enumerate(clips) for _ in c]
        feats = self.normalizer(standardise_by_speaker(self._window_features(clips), who))
        return clip_means((self.logits(feats) / self.temperature).softmax(-1).numpy(), clips)

    # --- files ----------------------------------------------------------------------------------
    def describe(self) -> dict:
        return {
            "format": FORMAT,
            "voxemo_version": __version__,
            "task": self.task,
            "labels": self.labels,
            "audio": self.audio.to_dict(),
            "frontend": self.frontend.cfg.to_dict(),
            "model": {"name": self.model.name, "config": _jsonable(dataclasses.asdict(self.model.config))},
            "per_window": self.per_window,
            **({"encoder": {"name": ENCODER_NAME, "sha256": self.encoder.sha256}} if self.encoder is not None else {}),
            **self.meta,
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write `<path>.safetensors` and `<path>.json` (a suffix on `path` is ignored)."""
        from safetensors.torch import save_file

        weights, config = pipeline_files(path)
        for p in (weights, config):
            if p.exists() and not overwrite:
                raise FileExistsError(f"{p} exists; pass overwrite=True (CLI: --force) to replace it")
        weights.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(weights), metadata={"format": FORMAT})
        config.write_text(json.dumps(self.describe(), indent=2))
        return weights, config


def pipeline_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(P.safetensors, P.json) of a pipeline path P, given as P, P.json, P.safetensors, or a folder
    holding P.json and P.safetensors (`voxemo/assets/voxemo_net`, or any folder with one pipeline)."""
    p = Path(path)
    if p.is_dir():
        inside = sorted(j.with_suffix("") for j in p.glob("*.json") if j.with_suffix(".safetensors").is_file())
        p = p / p.name if (p / (p.name + ".json")).is_file() or len(inside) != 1 else inside[0]
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


class PipelineError(Exception):
    """A pipeline file is missing, damaged, or from an incompatible version."""


def build_pipeline(desc: dict, encoder_path: str | os.PathLike | None = None) -> Pipeline:
    """A Pipeline with fresh weights from a description (the JSON half of a pipeline file).

    A "whisper" front-end's encoder is loaded from its pinned packages, or from `encoder_path` (a
    local copy of the same model); its sha256 must be the one the pipeline was trained with.
    """
    from .models import create_model

    model = create_model(desc["model"]["name"], **desc["model"]["config"])
    meta = {k: v for k, v in desc.items() if k not in
            {"format", "voxemo_version", "task", "labels", "audio", "frontend", "model", "per_window", "encoder"}}
    audio = AudioSettings(**desc["audio"])
    frontend = dict(desc["frontend"])
    rate = frontend.pop("sample_rate", audio.sample_rate)  # files written before the rate was stored once
    if rate != audio.sample_rate:
        raise ValueError(f"the front-end's sample rate ({rate} Hz) differs from the audio's ({audio.sample_rate} Hz)")
    encoder = None
    if frontend.get("kind") in ENCODER_KINDS:
        from .encoders import load_whisper_encoder

        encoder = load_whisper_encoder(encoder_path)
        want = desc.get("encoder", {}).get("sha256")
        if want != encoder.sha256:
            raise PipelineError(f"the pipeline was trained on the encoder with sha256 {want}; "
                                f"{encoder.source or 'the installed one'} has {encoder.sha256}")
    return Pipeline(FrontendConfig.from_dict(frontend), model, desc["labels"], encoder=encoder,
                    audio=audio, per_window=desc["per_window"],
                    task=desc.get("task", "emotion"), meta=meta)


def load_pipeline(path: str | os.PathLike, encoder: str | os.PathLike | None = None) -> Pipeline:
    """Load `<path>.json` + `<path>.safetensors`; no pickle, no code from the file is run.
    `encoder`: a local copy of the pretrained encoder a "whisper" pipeline needs (default: the
    pinned packages)."""
    from safetensors.torch import load_file

    weights, config = pipeline_files(path)
    for p in (config, weights):
        if not p.is_file():
            raise PipelineError(f"{p}: pipeline file not found")
    try:
        desc = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{config}: not a voxemo pipeline description ({e})") from None
    if desc.get("format") != FORMAT:
        raise PipelineError(f"{config}: format {desc.get('format')!r} is not {FORMAT!r}")
    from .encoders import EncoderError

    try:
        pipe = build_pipeline(desc, encoder)
    except EncoderError as e:
        raise PipelineError(f"{config}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise PipelineError(f"{config}: the description does not fit this voxemo ({type(e).__name__}: {e})") from None
    try:
        state = load_file(str(weights))
        pipe.load_state_dict(state, strict=True)
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise PipelineError(f"{weights}: weights are damaged or do not fit the description ({e})") from None
    return pipe.eval()


def clip_probabilities(run: Callable[[np.ndarray], np.ndarray], clips: Sequence[np.ndarray], n_classes: int,
                       batch_size: int = 32) -> np.ndarray:
    """The one batched inference over prepared clips: `run` maps (b, N) float32 windows to (b, K)
    probabilities (`Pipeline.run`, `OnnxRunner.run`); clips are (C, N) arrays. Windows of one length
    go through together, `batch_size` at a time; a clip's probabilities are its windows' mean (B, K)."""
    if not any(len(c) for c in clips):
        return np.zeros((len(clips), n_classes), np.float32)
    return clip_means(window_outputs(run, clips, batch_size), clips)


def window_outputs(run: Callable[[np.ndarray], np.ndarray], clips: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """`run` over every window of the clips, windows of one length `batch_size` at a time (fewer when
    that many would hold more than MAX_BATCH_SAMPLES): (W, ...) in window order (clip by clip)."""
    windows = [w for c in clips for w in c]
    by_length: dict[int, list[int]] = {}
    for j, w in enumerate(windows):
        by_length.setdefault(w.shape[0], []).append(j)
    out = None
    for length, rows in by_length.items():
        step = max(1, min(batch_size, MAX_BATCH_SAMPLES // max(length, 1)))
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            got = np.asarray(run(np.stack([windows[j] for j in part])))
            if out is None:
                out = np.zeros((len(windows), *got.shape[1:]), got.dtype)
            out[part] = got
    return out


def clip_means(per_window: np.ndarray, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Each clip's mean of its windows' rows of `per_window` (W, ...) -> (B, ...)."""
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(clips)])
    out = np.zeros((len(clips), *per_window.shape[1:]), np.float32)
    np.add.at(out, owner, per_window)
    return out / np.array([max(len(c), 1) for c in clips], np.float32).reshape(-1, *[1] * (per_window.ndim - 1))
