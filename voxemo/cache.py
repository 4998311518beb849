"""An on-disk cache of decoded, resampled waveforms, so a second pass over a corpus skips decoding.

Layout: `<root>/<settings key>/<file key>.npy`. An entry is a decoded clip (`AudioSettings.decode`:
mono, resampled, trimmed), before any crop; the settings key hashes what decoding depends on (rate,
trimming: `AudioSettings.decoding().key()`), so every crop and window of a clip is cut from one entry. The file key hashes the file's absolute path, size and mtime. A changed
file gets a new key (its old entry is simply never read again), an added file a new entry: only what
changed is decoded again. Entries are plain .npy arrays, written atomically, read without pickle.

Default location: `$VOXEMO_CACHE_DIR`, else the user's cache directory (platformdirs) + "waveforms".
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .audio import AudioError, AudioSettings


def default_cache_dir() -> Path:
    env = os.environ.get("VOXEMO_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("voxemo")) / "waveforms"


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


class WaveformCache:
    """`cache.load(path)` decodes once (`settings.decode`), then reads the cached array; `hits`/`misses`
    count both. Crops and windows are cut from what it returns (`settings.crop`, `settings.windows`)."""

    def __init__(self, settings: AudioSettings = AudioSettings(), root: str | os.PathLike | None = None):
        self.settings = settings
        self.dir = Path(root or default_cache_dir()) / settings.decoding().key()
        self.hits = 0
        self.misses = 0

    def entry(self, path: str | os.PathLike) -> Path:
        p = Path(path).resolve()
        st = p.stat()
        return self.dir / f"{_digest(f'{p}|{st.st_size}|{st.st_mtime_ns}')[:32]}.npy"

    def compute(self, path: str | os.PathLike) -> np.ndarray:
        """What an entry holds (here the decoded waveform); subclasses cache other per-file arrays."""
        return self.settings.decode(path)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        if not Path(path).is_file():  # let load_audio name the problem (missing, a folder, ...)
            return self.compute(path)
        entry = self.entry(path)
        if entry.is_file():
            try:
                x = np.load(entry, allow_pickle=False)
                self.hits += 1
                return x
            except (OSError, ValueError):
                pass  # a damaged entry is decoded again and rewritten
        x = self.compute(path)
        self.misses += 1
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.{id(x)}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, x, allow_pickle=False)
        os.replace(tmp, entry)
        return x

    def load_many(
        self, paths: Sequence[str | os.PathLike], *, workers: int | None = None,
        progress: Callable[[int], None] | None = None, skip_errors: bool = False,
    ) -> list[np.ndarray | AudioError]:
        """Load many files in threads (decoding and resampling release the GIL); order kept.

        `progress(n)` is called after each file. The first AudioError is raised, or with
        `skip_errors` returned in that file's place.
        """
        def one(path):
            try:
                return self.load(path)
            except AudioError as e:
                if not skip_errors:
                    raise
                return e

        workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            out = []
            for x in pool.map(one, paths):
                out.append(x)
                if progress:
                    progress(1)
        return out
