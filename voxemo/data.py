"""From a manifest to arrays: waveforms through the cache, features through the front-end, summaries.

Letters: B batch, N samples, F feature bins, T frames.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .audio import AudioError, AudioSettings
from .cache import WaveformCache
from .corpora import Manifest, Utterance
from .features import SMILE_SETS, Frontend, FrontendConfig, smile_functionals

Progress = Callable[[int], None]


def summarize(manifest: Manifest) -> dict:
    """Counts and duration statistics of a manifest, as `voxemo data info` prints them."""
    durations = [u.duration for u in manifest if u.duration is not None]
    return {
        "files": len(manifest),
        "corpora": dict(Counter(u.corpus for u in manifest)),
        "channels": dict(Counter(u.channel for u in manifest)),
        "speakers": len({u.speaker for u in manifest}),
        "speakers_by_gender": dict(Counter(g for _, g in {(u.speaker, u.gender) for u in manifest})),
        "emotions": dict(sorted(Counter(u.emotion for u in manifest).items())),
        "genders": dict(Counter(u.gender for u in manifest)),
        "duration": {
            "total": sum(durations),
            "min": min(durations),
            "mean": statistics.fmean(durations),
            "median": statistics.median(durations),
            "max": max(durations),
        } if durations else None,
        "problems": [str(p) for p in manifest.problems],
    }


@torch.inference_mode()
def compute_features(
    frontend: Frontend, waves: Sequence[np.ndarray], *, batch_size: int = 32, progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the front-end over waveforms in batches: features (len, ...) padded along time, and frames per clip.

    Clips of unequal length are zero-padded to the longest before the front-end; `lengths` tells
    how many frames of each row come from the clip itself. The output is allocated once and
    filled batch by batch (no concatenation of large arrays).
    """
    n_max = max(w.shape[0] for w in waves)
    out = None
    for i in range(0, len(waves), batch_size):
        batch = waves[i : i + batch_size]
        x = torch.zeros(len(batch), n_max)
        for row, w in enumerate(batch):
            x[row, : w.shape[0]] = torch.from_numpy(w)
        f = frontend(x)
        if out is None:
            out = np.empty((len(waves), *f.shape[1:]), dtype=np.float32)
        out[i : i + len(batch)] = f.numpy()
        if progress:
            progress(len(batch))
    lengths = np.array([frontend.n_frames(w.shape[0]) for w in waves])
    return out, lengths


@dataclass
class FeatureSet:
    """Features of a corpus, row i from utterances[i]; what `voxemo features` writes."""

    features: np.ndarray  # (B, ...) float32
    lengths: np.ndarray  # (B,) frames from the clip itself (the rest is padding); 1 for functionals
    utterances: list[Utterance]
    config: dict  # front-end and audio settings
    names: list[str] = field(default_factory=list)  # feature names (openSMILE functionals)
    skipped: list[str] = field(default_factory=list)  # "<path>: <problem>" for clips that failed to load

    def save(self, path) -> None:
        """Write as .npz (string columns as unicode arrays: no pickle needed to read it back)."""
        import json

        np.savez(
            path,
            features=self.features,
            lengths=self.lengths,
            path=np.array([u.path for u in self.utterances]),
            emotion=np.array([u.emotion for u in self.utterances]),
            speaker=np.array([u.speaker for u in self.utterances]),
            gender=np.array([u.gender for u in self.utterances]),
            names=np.array(self.names),
            config=np.array(json.dumps(self.config)),
        )


def extract_features(
    manifest: Sequence[Utterance], kind: str, *, settings: AudioSettings = AudioSettings(),
    frontend: FrontendConfig | None = None, cache_dir=None, batch_size: int = 32,
    progress: Progress | None = None,
) -> FeatureSet:
    """Decode (through the cache), crop (`settings.crop`, the training crop) and compute `kind`
    features for every utterance that loads.

    kind: a front-end kind ("logmel", "mfcc", "stft", "mean_mfcc", "mfcc_time_mean") or an openSMILE set
    ("egemaps", "compare"). Clips that fail to load are listed in `skipped`, not fatal.
    `progress` is called once per clip decoded and once per clip featurised.
    """
    if kind == "whisper":
        return _encoder_features(manifest, settings, cache_dir, progress)
    cache = WaveformCache(settings, cache_dir)
    loaded = cache.load_many([u.path for u in manifest], progress=progress, skip_errors=True)
    good = [(u, w) for u, w in zip(manifest, loaded) if not isinstance(w, AudioError)]
    skipped = [str(w) for w in loaded if isinstance(w, AudioError)]
    if not good:
        raise AudioError(manifest[0].path if manifest else "<empty>", "no clip could be loaded")
    utts, waves = [u for u, _ in good], [settings.crop(w) for _, w in good]
    config = {"kind": kind, "audio": settings.to_dict()}
    if kind in SMILE_SETS:
        feats, names = smile_functionals(waves, settings.sample_rate, kind)
        if progress:
            progress(len(waves))
        return FeatureSet(feats, np.ones(len(waves), dtype=np.int64), utts, config, names, skipped)
    cfg = frontend or FrontendConfig.for_kind(kind)
    config["frontend"] = cfg.to_dict()
    feats, lengths = compute_features(Frontend(cfg, settings.sample_rate), waves, batch_size=batch_size, progress=progress)
    return FeatureSet(feats, lengths, utts, config, [], skipped)


def _encoder_features(manifest: Sequence[Utterance], settings: AudioSettings, cache_dir, progress) -> FeatureSet:
    """Whisper base's pooled statistics per clip (B, L + 1, 2, D), through the embedding cache."""
    from .embeddings import embed_corpus

    stats, skipped = embed_corpus(manifest, settings, cache_root=cache_dir,
                                  progress=(lambda n: progress(2 * n)) if progress else None)
    gone = {p.path for p in skipped}
    utts = [u for u in manifest if u.path not in gone]
    if not utts:
        raise AudioError(manifest[0].path if manifest else "<empty>", "no clip could be embedded")
    config = {"kind": "whisper", "audio": settings.to_dict(), "layout": "(clips, layers 0-L, [mean, std], width)"}
    return FeatureSet(stats, np.ones(len(utts), dtype=np.int64), utts, config, [], [str(p) for p in skipped])
