"""Whisper base embeddings of every clip in ../shared/data: wall time against a 10-minute goal.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/whisper_embed.py [--data DIR] [--cache-root DIR]

Scans RAVDESS speech (1440), RAVDESS song (1009) and EmoDB (535), 2,984 clips, and runs
`embeddings.embed_corpus` on all of them with the whole clip (AudioSettings(): 16 kHz, no offset, no
duration, no trimming): decode, Whisper's log-mel on the clip's own length, the encoder, mean and std
of every layer, one cache entry per clip. The time includes loading the encoder (parsing model.bin)
but not scanning the corpora. The cache is the one `whisper_probe.py` reads (by default the voxemo
cache, $VOXEMO_CACHE_DIR or the user's); the run says how many clips it computed and how many it
only read, so a warm cache is never reported as the cold figure. The load average before and after
shows whether the machine was shared.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from voxemo.cache import AudioSettings
from voxemo.corpora import scan
from voxemo.embeddings import EmbeddingCache, embed_corpus
from voxemo.encoders.whisper import load_whisper_encoder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CORPORA = (("ravdess_speech", "ravdess"), ("ravdess_song", "ravdess"), ("emodb", "emodb"))
GOAL_SECONDS = 600.0  # 10 minutes for the three corpora


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the three corpora (default: %(default)s)")
    ap.add_argument("--cache-root", type=Path, default=None, help="embedding cache root (default: the voxemo cache)")
    args = ap.parse_args()

    utts = []
    for folder, corpus in CORPORA:
        m = scan(args.data / folder, corpus)
        print(f"{folder}: {len(m)} clips, {sum(u.duration for u in m) / 60:.1f} min of audio")
        utts += m
    settings = AudioSettings()
    load_before = os.getloadavg()[0]

    start = time.perf_counter()
    encoder = load_whisper_encoder()
    cache = EmbeddingCache(encoder, settings, args.cache_root)
    cached = sum(cache.entry(u.path).is_file() for u in utts)
    X, skipped = embed_corpus(utts, settings, encoder=encoder, cache_root=args.cache_root)
    wall = time.perf_counter() - start

    print(f"\nclips {len(utts)}: embedded {len(X)} (computed {len(utts) - cached - len(skipped)}, "
          f"read from cache {cached}), skipped {len(skipped)}; array {tuple(X.shape)} {X.dtype}")
    for p in skipped[:5]:
        print(f"  skipped {p}")
    print(f"cache: {cache.dir}")
    print(f"torch threads {torch.get_num_threads()}, load average (1 min) {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")
    print(f"\n{'':24}{'wall time':>12}{'goal':>10}")
    print(f"{'whisper base, 2,984 clips':24}{wall:>10.1f} s{GOAL_SECONDS:>8.0f} s   "
          f"{'met' if wall <= GOAL_SECONDS else 'missed'} ({wall / GOAL_SECONDS:.2f} of the goal)")


if __name__ == "__main__":
    main()
