"""Per-clip embeddings from a pretrained encoder's every layer, computed once and cached on disk.

A clip's embedding is the mean and the standard deviation over its frames of each hidden state of the
Whisper encoder, the clip first scaled to one loudness (`WhisperEncoder.pooled_stats`), (`encoders.whisper`, whole clip, unpadded): an array (L + 1, 2, D) float32, row 0 the
stem (+ positions), row L the encoder output; [:, 0] the means, [:, 1] the standard deviations
(population, over the clip's own frames only). For Whisper base: (7, 2, 512). For the frame heads,
the frames themselves (`FrameCache`, `WhisperEncoder.frame_states`): each pair averaged, (L + 1, S', D)
float16, S' = ceil(S / 2); `embed_frames` pads a corpus's to its longest clip with zeros.

The cache works as the waveform cache (`cache.py`), one `.npy` per file keyed by path, size and mtime,
in a folder keyed by the encoder's sha256, the audio settings and the pooling: another encoder file or
other settings never read these entries. `embed_corpus` computes the missing ones in batches of clips
of similar length (each clip computed exactly as alone: see `WhisperEncoder`), under
torch.inference_mode, and writes them through `EmbeddingCache.load` (`embed_frames` the same way).

Letters: B clips, L encoder blocks, D width, S encoder frames, S' pooled frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .audio import AudioError, AudioSettings
from .cache import WaveformCache, default_cache_dir
from .corpora import Problem, Utterance

POOLING = "level-mean-std-v2"  # part of the cache key: change it when the pooled statistics change
FRAMES = "level-frame-pairs-f16-v1"  # the same for the cached frames (FrameCache)
BATCH_SECONDS = 64.0  # padded audio per batch (clips x longest clip)
MAX_BATCH = 16  # clips per batch
DECODE_WORKERS = 2  # threads decoding the next batch's files


class EmbeddingCache(WaveformCache):
    """`cache.load(path)` -> the clip's pooled statistics (L + 1, 2, D), computed once per file.

    Entries live in `<root>/embed-<key>/`, key = hash of the encoder's sha256, the audio settings and
    POOLING; `root` defaults to the waveform cache's root ($VOXEMO_CACHE_DIR or the user's cache).
    """

    pooling = POOLING  # what an entry holds, part of the key
    prefix = "embed"  # the folder's name before the key

    def __init__(self, encoder, settings: AudioSettings = AudioSettings(), root: str | os.PathLike | None = None,
                 copy: int = 0, voice: int = 0):
        from .encoders.whisper import SAMPLE_RATE

        if not encoder.sha256:
            raise ValueError("EmbeddingCache needs an encoder loaded from a file (its sha256 names the cache)")
        if settings.sample_rate != SAMPLE_RATE:
            raise ValueError(f"Whisper listens at {SAMPLE_RATE} Hz; AudioSettings.sample_rate is {settings.sample_rate}")
        super().__init__(settings, root)
        self.encoder = encoder
        self.copy = copy  # 0: the clip itself; k > 0: its k-th degraded copy (`clip`)
        self.voice = voice  # 0: the speaker's own voice; k > 0: voice copy k, the clip at speed augment.voice_factor(k)
        self.dir = Path(root or default_cache_dir()) / f"{self.prefix}-{self.key()}"
        self._ready: dict[Path, np.ndarray] = {}  # computed by a batch, waiting to be written by load()

    def key(self) -> str:
        ident = {"encoder": self.encoder.sha256, "audio": asdict(self.settings), "pooling": self.pooling}
        if self.copy:
            from .augment import DEGRADE

            ident.update(copy=self.copy, degrade=DEGRADE)
        if self.voice:
            from .augment import VOICE, voice_factor

            ident.update(speed=voice_factor(self.voice), voice=VOICE)
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def compute(self, path: str | os.PathLike) -> np.ndarray:
        ready = self._ready.pop(self.entry(path), None)
        if ready is not None:
            return ready
        return self.embed([self.clip(path)])[0]

    def embed(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The entries of clips (computed together, each as alone)."""
        return list(pooled_stats(self.encoder, waves))

    def clip(self, path: str | os.PathLike) -> np.ndarray:
        """What is embedded for `path`: its training crop; for voice copy k > 0 that crop played at
        speed `augment.voice_factor(k)` (`augment.change_speed`); then for copy k > 0 a degraded copy
        of it (`augment.degrade`, seeded by the file's name and k, so the same copy every time)."""
        x = self.settings.load(path)
        if self.voice:
            from .augment import change_speed, voice_factor

            x = change_speed(x, self.settings.sample_rate, voice_factor(self.voice))
        if not self.copy:
            return x
        from .augment import degrade

        seed = int(hashlib.sha256(f"{Path(path).name}|{self.copy}".encode()).hexdigest()[:12], 16)
        return degrade(x, self.settings.sample_rate, np.random.default_rng(seed))


class FrameCache(EmbeddingCache):
    """`cache.load(path)` -> the clip's frames of every hidden state, pairs averaged, (L + 1, S', D)
    float16 (`WhisperEncoder.frame_states`, its own frames only), computed once per file, in
    `<root>/frames-<key>/`. About 360 kB a second of audio for Whisper base."""

    pooling = FRAMES
    prefix = "frames"

    def embed(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return frame_states(self.encoder, waves)


def padded(waves: Sequence[np.ndarray]):
    """Clips zero-padded into one batch (B, N) float32 tensor, and their lengths (B,), None when equal."""
    import torch

    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))  # (B, N)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return batch, (lengths if len(set(lengths.tolist())) > 1 else None)


def pooled_stats(encoder, waves: Sequence[np.ndarray]) -> np.ndarray:
    """Mean and std over each clip's own frames of every hidden state: (B, L + 1, 2, D) float32.

    Clips are zero-padded into one batch and masked (ValueError for a clip over 30 s).
    """
    import torch

    with torch.inference_mode():
        return encoder.pooled_stats(*padded(waves)).numpy()


def frame_states(encoder, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each clip's own frames of every hidden state, pairs averaged: (L + 1, S'_i, D) float16 each."""
    import torch

    with torch.inference_mode():
        h, n = encoder.frame_states(*padded(waves))  # (B, L + 1, S', D), (B,)
    return [x[:, :k].numpy().astype(np.float16) for x, k in zip(h, n.tolist())]


@contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` torch threads (None: leave the setting alone)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(order: list[int], seconds: Sequence[float], budget: float, max_batch: int) -> list[list[int]]:
    """Cut indices sorted by length into batches whose padded length (count x longest) fits `budget`."""
    out, cur = [], []
    for i in order:
        if cur and ((len(cur) + 1) * seconds[i] > budget or len(cur) == max_batch):  # seconds[i] is the longest
            out.append(cur)
            cur = []
        cur.append(i)
    return out + [cur] if cur else out


def embed_corpus(
    utterances: Sequence[Utterance], settings: AudioSettings = AudioSettings(), *, encoder=None,
    cache_root: str | os.PathLike | None = None, batch_seconds: float = BATCH_SECONDS, max_batch: int = MAX_BATCH,
    threads: int | None = None, progress: Callable[[int], None] | None = None, copy: int = 0, voice: int = 0,
) -> tuple[np.ndarray, list[Problem]]:
    """Pooled Whisper statistics of every clip: (array (B, L + 1, 2, D) float32, skipped).

    The array holds the clips that could be embedded, in the order given; `skipped` lists the others
    (`Problem(path, reason)`: undecodable, silent, longer than 30 s). `encoder` defaults to
    `load_whisper_encoder()`; `threads` sets torch's threads for the call (2 when the machine is
    yours; None keeps the current setting, e.g. OMP_NUM_THREADS). `progress(n)` after n clips.
    `copy` k > 0 embeds each clip's k-th degraded copy instead, `voice` k > 0 its k-th voice copy
    (`EmbeddingCache.clip`), each cached apart.
    """
    from .encoders.whisper import load_whisper_encoder

    cache = EmbeddingCache(encoder if encoder is not None else load_whisper_encoder(), settings, cache_root, copy,
                           voice)
    kept, skipped = _embed_all(cache, utterances, batch_seconds, max_batch, threads, progress)
    if not kept:
        cfg = cache.encoder.cfg
        return np.zeros((0, cfg.layers + 1, 2, cfg.width), np.float32), skipped
    return np.stack(kept), skipped


def embed_frames(
    utterances: Sequence[Utterance], settings: AudioSettings = AudioSettings(), *, encoder=None,
    cache_root: str | os.PathLike | None = None, batch_seconds: float = BATCH_SECONDS, max_batch: int = MAX_BATCH,
    threads: int | None = None, progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[Problem]]:
    """Whisper's frames of every clip (`FrameCache`), zero-padded to the longest: (array (B, L + 1, S', D)
    float16, skipped), as `embed_corpus` (the same arguments, no degraded copies). A clip's own frames
    are the first of its row; the frame heads tell them from padding (`encoder_heads.frame_mask`)."""
    from .encoders.whisper import load_whisper_encoder

    cache = FrameCache(encoder if encoder is not None else load_whisper_encoder(), settings, cache_root)
    kept, skipped = _embed_all(cache, utterances, batch_seconds, max_batch, threads, progress)
    cfg = cache.encoder.cfg
    out = np.zeros((len(kept), cfg.layers + 1, max((k.shape[1] for k in kept), default=0), cfg.width), np.float16)
    for i, k in enumerate(kept):
        out[i, :, : k.shape[1]] = k
    return out, skipped


def _embed_all(cache: EmbeddingCache, utterances: Sequence[Utterance], batch_seconds: float, max_batch: int,
               threads: int | None, progress: Callable[[int], None] | None) -> tuple[list[np.ndarray], list[Problem]]:
    """Every clip's entry through `cache` (the missing ones computed in batches of similar length):
    (the entries of the clips that could be embedded, in order; the others as Problems)."""
    from .encoders.whisper import MAX_SAMPLES, MIN_SAMPLES

    settings = cache.settings
    results: list[np.ndarray | None] = [None] * len(utterances)
    problems: dict[int, str] = {}
    todo = []
    for i, u in enumerate(utterances):
        try:
            hit = cache.entry(u.path).is_file()
        except OSError as e:
            problems[i] = f"cannot read the file ({e.strerror or e})"
            continue
        if hit:
            results[i] = cache.load(u.path)
            if progress:
                progress(1)
        else:
            todo.append(i)

    seconds = [u.duration or 0.0 for u in utterances]
    batches = _batches(sorted(todo, key=lambda i: seconds[i]), seconds, batch_seconds, max_batch)

    def decode(i: int) -> np.ndarray | str:
        try:
            wave = cache.clip(utterances[i].path)
        except AudioError as e:
            return e.problem
        if len(wave) > MAX_SAMPLES:
            return f"{len(wave) / settings.sample_rate:.1f} s is longer than Whisper's 30 s window"
        if len(wave) < MIN_SAMPLES:
            return f"{len(wave)} samples is too short for Whisper's log-mel"
        return wave

    def decode_batch(batch: list[int]) -> list[np.ndarray | str]:
        return [decode(i) for i in batch]

    with torch_threads(threads), ThreadPoolExecutor(DECODE_WORKERS) as pool:
        ahead = {k: pool.submit(decode_batch, batches[k]) for k in range(min(2, len(batches)))}
        for k, batch in enumerate(batches):
            waves = ahead.pop(k).result()
            if k + 2 < len(batches):  # decode two batches ahead of the encoder, no more (memory)
                ahead[k + 2] = pool.submit(decode_batch, batches[k + 2])
            good = [(i, w) for i, w in zip(batch, waves) if not isinstance(w, str)]
            problems.update({i: w for i, w in zip(batch, waves) if isinstance(w, str)})
            if good:
                entries = cache.embed([w for _, w in good])
                for (i, _), s in zip(good, entries):
                    path = utterances[i].path
                    cache._ready[cache.entry(path)] = s
                    results[i] = cache.load(path)  # writes the entry
            if progress:
                progress(len(batch))

    kept = [r for r in results if r is not None]
    skipped = [Problem(utterances[i].path, reason) for i, reason in sorted(problems.items())]
    return kept, skipped
