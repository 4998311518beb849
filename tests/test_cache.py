import os
import shutil

import numpy as np
import pytest

from voxemo.audio import AudioError
from voxemo.audio import AudioSettings
from voxemo.cache import WaveformCache

from .conftest import DATA

SRC = DATA / "ravdess_speech" / "Actor_02"


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for p in sorted(SRC.glob("*.flac"))[:4]:
        shutil.copy(p, root / p.name)
    return sorted(root.glob("*.flac"))


def test_second_pass_reads_the_cache_and_matches(tmp_path, corpus):
    settings = AudioSettings(16000, 0.5, 3.0)
    first = WaveformCache(settings, tmp_path / "c")
    a = first.load_many(corpus)
    assert (first.misses, first.hits) == (4, 0)
    second = WaveformCache(settings, tmp_path / "c")
    b = second.load_many(corpus)
    assert (second.misses, second.hits) == (0, 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(b[0], settings.decode(corpus[0]))  # the cache returns what decoding gives
    # one entry serves every crop of the same decoding
    other = WaveformCache(AudioSettings(16000, 0.0, 2.0), tmp_path / "c")
    other.load_many(corpus)
    assert (other.misses, other.hits) == (0, 4)


def test_changed_and_added_files_invalidate_only_themselves(tmp_path, corpus):
    settings = AudioSettings(16000)
    WaveformCache(settings, tmp_path / "c").load_many(corpus)
    # Replace one file's content by another recording (new size and mtime), and add a new file.
    shutil.copy(SRC / "03-01-08-02-02-02-02.flac", corpus[1])
    os.utime(corpus[1], ns=(1, 1))
    added = corpus[0].parent / "03-01-08-02-02-01-02.flac"
    shutil.copy(SRC / added.name, added)
    cache = WaveformCache(settings, tmp_path / "c")
    out = cache.load_many(corpus + [added])
    assert (cache.misses, cache.hits) == (2, 3)
    np.testing.assert_array_equal(out[1], settings.decode(SRC / "03-01-08-02-02-02-02.flac"))


def test_other_settings_use_other_entries(tmp_path, corpus):
    a = WaveformCache(AudioSettings(16000), tmp_path / "c")
    a.load(corpus[0])
    b = WaveformCache(AudioSettings(8000), tmp_path / "c")
    x = b.load(corpus[0])
    assert b.misses == 1 and abs(x.shape[0] - a.load(corpus[0]).shape[0] / 2) <= 1


def test_errors_are_not_cached_and_can_be_skipped(tmp_path, corpus):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    cache = WaveformCache(AudioSettings(), tmp_path / "c")
    with pytest.raises(AudioError, match="bad.wav"):
        cache.load_many([corpus[0], bad])
    out = cache.load_many([corpus[0], bad], skip_errors=True)
    assert isinstance(out[1], AudioError) and isinstance(out[0], np.ndarray)
    with pytest.raises(AudioError, match="file not found"):
        cache.load(tmp_path / "gone.wav")


def test_damaged_entry_is_decoded_again(tmp_path, corpus):
    cache = WaveformCache(AudioSettings(), tmp_path / "c")
    x = cache.load(corpus[0])
    cache.entry(corpus[0]).write_bytes(b"garbage")
    np.testing.assert_array_equal(WaveformCache(AudioSettings(), tmp_path / "c").load(corpus[0]), x)


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "env-cache"))
    assert WaveformCache().dir.parent == tmp_path / "env-cache"
