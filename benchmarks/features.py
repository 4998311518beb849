"""Decoding and front-end speed on RAVDESS speech (1440 clips), against a per-file librosa loop.

    .venv/bin/python benchmarks/features.py [--data DIR]

1. Scan the corpus, then decode every clip twice through a fresh `WaveformCache` (16 kHz, offset
   0.5 s, 3 s): the first pass decodes (cold cache), the second reads the cached arrays.
2. On the same decoded clips, time our batched front-end (`compute_features`, batches of 32) against
   librosa one clip at a time, for log-mel and MFCC with the same settings, one timed run each after
   one warm-up call of each on its unit of work (one batch for ours, one clip for librosa). The target is our front-end >= 5x librosa's clips/s.
3. Print the largest absolute difference between ours and librosa on the first clip, per kind.

"Cold" means an empty voxemo cache; the operating system may still hold the files in memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import torch

from voxemo.audio import AudioSettings
from voxemo.cache import WaveformCache
from voxemo.corpora import scan
from voxemo.data import compute_features
from voxemo.features import Frontend, FrontendConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ravdess_speech"
SR = 16000
N_FFT = 512
HOP = 160
N_MELS = 128
N_MFCC = 40
PREEMPHASIS = 0.97
BATCH_SIZE = 32
TARGET = 5.0  # our clips/s over librosa's

CONFIGS = {
    "logmel": FrontendConfig(kind="logmel", n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
    "mfcc": FrontendConfig(kind="mfcc", n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                           n_mfcc=N_MFCC, preemphasis=PREEMPHASIS, window="hamming"),
}


def librosa_logmel(y: np.ndarray) -> np.ndarray:
    return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS))


def librosa_mfcc(y: np.ndarray) -> np.ndarray:
    y = librosa.effects.preemphasis(y, coef=PREEMPHASIS, zi=np.zeros(1))
    return librosa.feature.mfcc(y=y, sr=SR, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, window="hamming")


LIBROSA = {"logmel": librosa_logmel, "mfcc": librosa_mfcc}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"RAVDESS speech folder (default: {DEFAULT_DATA})")
    args = ap.parse_args()

    print(f"torch threads: {torch.get_num_threads()}")
    manifest = scan(args.data)
    paths = [u.path for u in manifest]
    n = len(paths)
    print(f"scanned {args.data}: {n} clips, {len(manifest.problems)} problems")

    settings = AudioSettings(SR, 0.5, 3.0)
    with tempfile.TemporaryDirectory(prefix="voxemo-bench-") as tmp:
        cold_cache = WaveformCache(settings, root=tmp)
        waves, cold = timed(lambda: cold_cache.load_many(paths))
        warm_cache = WaveformCache(settings, root=tmp)
        cached, warm = timed(lambda: warm_cache.load_many(paths))
    assert (cold_cache.misses, warm_cache.hits) == (n, n)
    assert all(np.array_equal(a, b) for a, b in zip(waves, cached))
    waves = [settings.crop(x) for x in waves]
    print("\ndecoding (WaveformCache.load_many, 16 kHz, offset 0.5 s, 3 s)")
    print(f"  cold   {cold:7.2f} s  {n / cold:8.1f} clips/s")
    print(f"  cached {warm:7.2f} s  {n / warm:8.1f} clips/s")
    print(f"  speed-up {cold / warm:.1f}x")

    for kind, cfg in CONFIGS.items():
        frontend = Frontend(cfg, SR)
        ref = LIBROSA[kind]
        compute_features(frontend, waves[:BATCH_SIZE], batch_size=BATCH_SIZE)  # warm-up: one batch, our unit of work
        ref(waves[0])  # warm-up: one clip, librosa's unit of work
        (ours, _), t_ours = timed(lambda: compute_features(frontend, waves, batch_size=BATCH_SIZE))
        theirs, t_ref = timed(lambda: [ref(w) for w in waves])
        ratio = t_ref / t_ours
        diff = float(np.max(np.abs(ours[0] - theirs[0])))
        print(f"\n{kind} (n_fft {cfg.n_fft}, hop {cfg.hop_length}, {cfg.n_mels} mels"
              + (f", {cfg.n_mfcc} coefficients, pre-emphasis {cfg.preemphasis}, Hamming)" if kind == "mfcc" else ")")
              + f", output {ours.shape[1:]} per clip")
        print(f"  voxemo batched ({BATCH_SIZE}) {t_ours:7.2f} s  {n / t_ours:8.1f} clips/s")
        print(f"  librosa per file     {t_ref:7.2f} s  {n / t_ref:8.1f} clips/s")
        print(f"  ratio {ratio:.1f}x  target >= {TARGET:g}x: {'met' if ratio >= TARGET else 'NOT met'}")
        print(f"  max abs difference on the first clip: {diff:.3g} dB" if kind == "logmel"
              else f"  max abs difference on the first clip: {diff:.3g}")


if __name__ == "__main__":
    main()
