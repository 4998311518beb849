"""Corpora: each module turns a folder into `Utterance` records (lhotse-style recipes).

Every corpus module has `NAME`, `scan(root, *, strict=False) -> Manifest` and `looks_like(paths) ->
int` (how many of a sample of file names fit its naming, used to detect the corpus of a folder).
A file whose name does not fit is recorded in `Manifest.problems` with its path and the reason;
with `strict=True` the first such file raises `CorpusError` instead.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import soundfile as sf

# Canonical emotion names, lower case (RAVDESS's words, plus EmoDB's boredom).
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom")

# Spellings seen in corpora and users' folders -> canonical name.
EMOTION_ALIASES = {
    "neutral": "neutral", "neu": "neutral", "n": "neutral",
    "calm": "calm",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy", "h": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "fearful": "fearful", "fear": "fearful", "fea": "fearful",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "surprised": "surprised", "surprise": "surprised", "ps": "surprised",
    "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
    "boredom": "boredom", "bored": "boredom",
}

AUDIO_SUFFIXES = {"." + f.lower() for f in sf.available_formats()} | {".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff"}


def canonical_emotion(label: str) -> str:
    """Map a spelling of an emotion to its canonical name; unknown labels come back lower-cased."""
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    return EMOTION_ALIASES.get(key, key)


@dataclass(frozen=True)
class Utterance:
    """One recording and what its corpus says about it."""

    path: str  # absolute path of the audio file
    corpus: str  # "ravdess", "emodb", "tess", "savee", "cremad" or "folder"
    speaker: str  # corpus-prefixed speaker id, unique across corpora ("ravdess:01")
    gender: str  # "female", "male" or "unknown"
    emotion: str  # canonical lower-case name (see EMOTIONS)
    intensity: str | None = None  # "normal"/"strong" (RAVDESS), "low"/"medium"/"high"/"unspecified" (CREMA-D)
    text: str | None = None  # statement or sentence id (RAVDESS "01", EmoDB "a01", TESS the word)
    channel: str = "speech"  # "speech" or "song"
    duration: float | None = None  # seconds, from the file header
    repetition: str | None = None  # RAVDESS repetition "01"/"02", EmoDB version letter
    modality: str | None = None  # RAVDESS modality field ("03" = audio-only)
    age: int | None = None  # speaker age when the corpus documents it


@dataclass(frozen=True)
class Problem:
    """A file that was skipped, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class CorpusError(Exception):
    """A folder cannot be read as the corpus asked for (or as any corpus)."""


class Manifest(list):
    """A list of `Utterance`s, plus `problems`: the files that did not fit and why."""

    def __init__(self, utterances: Iterable[Utterance] = (), problems: Iterable[Problem] = ()):
        super().__init__(utterances)
        self.problems: list[Problem] = list(problems)

    def __add__(self, other: "Manifest") -> "Manifest":
        return Manifest(list(self) + list(other), self.problems + getattr(other, "problems", []))


class Collector:
    """Builds a Manifest while a corpus module walks its files; `reject` honours `strict`."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.manifest = Manifest()

    def add(self, utt: Utterance) -> None:
        self.manifest.append(utt)

    def reject(self, path: str | os.PathLike, reason: str) -> None:
        if self.strict:
            raise CorpusError(f"{path}: {reason}")
        self.manifest.problems.append(Problem(str(path), reason))

    def header(self, path: Path) -> float | None:
        """Duration in seconds from the file header; a file soundfile cannot read is rejected."""
        if path.stat().st_size == 0:
            self.reject(path, "empty file (0 bytes)")
            return None
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            self.reject(path, f"not an audio file soundfile can read ({e})")
            return None
        if info.frames == 0:
            self.reject(path, "zero-length audio (no samples)")
            return None
        return info.frames / info.samplerate


def scan_files(paths: Iterable[Path], parse, *, strict: bool) -> Manifest:
    """Parse each path (`parse(path) -> Utterance | reason`), read its duration, collect problems."""
    out = Collector(strict)
    for path in paths:
        utt = parse(path)
        if isinstance(utt, str):
            out.reject(path, utt)
            continue
        duration = out.header(path)
        if duration is not None:
            out.add(dataclasses.replace(utt, duration=duration))
    return out.manifest


def audio_files(root: Path) -> list[Path]:
    """All files under `root` with an audio suffix, sorted; hidden files skipped.

    Symlinks are followed, but every real folder is walked once (a link back up the tree, or to
    itself, is not entered again: no loop) and every real file is listed once, under the first of
    its paths in sorted order. Broken links are listed as they are (reported when read).
    """
    seen_dirs: set[tuple[int, int]] = set()
    found: dict[tuple[int, int] | str, Path] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # reached again through a link: already walked
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if Path(f).suffix.lower() not in AUDIO_SUFFIXES or f.startswith("."):
                continue
            path = Path(folder) / f
            try:
                fst = path.stat()
                key: tuple[int, int] | str = (fst.st_dev, fst.st_ino)
            except OSError:  # a broken link: keep it, the reader names the problem
                key = str(path)
            if key not in found or str(path) < str(found[key]):
                found[key] = path
    return sorted(found.values())


def _modules():
    from . import cremad, emodb, folder, ravdess, savee, tess

    return {m.NAME: m for m in (ravdess, emodb, tess, savee, cremad, folder)}


def corpus_names() -> list[str]:
    return list(_modules())


def detect(root: str | os.PathLike) -> str:
    """Name the corpus a folder holds, from its file names and layout; CorpusError if none fits."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return "folder"  # a labels CSV given itself (see folder.py)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a folder")
    files = audio_files(root)
    csvs = [p for p in root.glob("*.csv") if p.name != "VideoDemographics.csv"]
    if not files and not csvs:
        raise CorpusError(f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_SUFFIXES)[:6])}, ...)")
    sample = files[:: max(1, len(files) // 200)]
    scores = {name: m.looks_like(root, sample) for name, m in _modules().items()}
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        raise CorpusError(
            f"{root}: unknown corpus layout: file names fit none of {', '.join(corpus_names())} "
            "(for your own data use one folder per emotion label, or a CSV with path,label)"
        )
    return best


def scan(root: str | os.PathLike, corpus: str | None = None, *, strict: bool = False) -> Manifest:
    """Scan a corpus folder; `corpus` names it ("ravdess", ...) or None to detect it."""
    modules = _modules()
    name = corpus or detect(root)
    if name not in modules:
        raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(modules)}")
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"{root}: folder not found")
    manifest = modules[name].scan(root, strict=strict)
    if not manifest:
        reasons = f" ({len(manifest.problems)} files did not fit, e.g. {manifest.problems[0]})" if manifest.problems else ""
        raise CorpusError(f"{root}: no {name} recordings found{reasons}")
    return manifest


def label_from_name(path: str | os.PathLike) -> str | None:
    """The emotion a file's name gives it under a known corpus's naming (RAVDESS, EmoDB, CREMA-D,
    SAVEE, TESS), or None: lets `voxemo predict` show the true label beside its guess."""
    from . import cremad, emodb, ravdess, savee, tess

    p = Path(path)
    for parse in (ravdess.parse, emodb.parse, cremad.parser({}), savee.parse, tess.parse):
        utt = parse(p)
        if isinstance(utt, Utterance):
            return utt.emotion
    return None


def parse_data_arg(arg: str) -> tuple[str | None, str]:
    """'emodb:/data/emodb' -> ("emodb", "/data/emodb"); a plain path -> (None, path)."""
    name, sep, rest = arg.partition(":")
    if sep and name in _modules():
        return name, rest
    return None, arg


MANIFEST_FIELDS = [f.name for f in dataclasses.fields(Utterance)]


def write_manifest(manifest: Iterable[Utterance], path: str | os.PathLike) -> None:
    """Write utterances as CSV, one row each, columns in `Utterance` field order."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        w.writeheader()
        for u in manifest:
            w.writerow({k: ("" if v is None else v) for k, v in dataclasses.asdict(u).items()})
