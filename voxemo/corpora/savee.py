"""SAVEE, Surrey Audio-Visual Expressed Emotion: four male speakers, DC, JE, JK and KL.

Two layouts are common: the original `DC/a01.wav` (speaker folder, then emotion code and number) and
the flat `DC_a01.wav`. Emotion codes: a anger, d disgust, f fear, h happiness, n neutral, sa sadness,
su surprise.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import Manifest, Utterance, audio_files, scan_files

NAME = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
PATTERN = re.compile(r"^(?:([A-Za-z]{2})_)?(sa|su|a|d|f|h|n)(\d\d)$")
EMOTIONS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
            "sa": "sad", "su": "surprised"}


def parse(path: Path) -> Utterance | str:
    m = PATTERN.match(path.stem)
    if not m:
        return "name is not <code><number> in a speaker folder, or <speaker>_<code><number> (e.g. DC_a01)"
    prefix, code, number = m.groups()
    speaker = (prefix or path.parent.name).upper()
    if speaker not in SPEAKERS:
        where = "prefix" if prefix else "folder"
        return f"speaker {where} {prefix or path.parent.name!r} is not one of {', '.join(SPEAKERS)}"
    return Utterance(
        path=str(path.resolve()), corpus=NAME, speaker=f"{NAME}:{speaker}", gender="male",
        emotion=EMOTIONS[code], text=f"{code}{number}",
    )


def scan(root: Path, *, strict: bool = False) -> Manifest:
    return scan_files(audio_files(root), parse, strict=strict)


def looks_like(root: Path, sample: list[Path]) -> int:
    return sum(isinstance(parse(p), Utterance) for p in sample)
