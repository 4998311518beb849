"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005): 10 speakers, 535 files.

File names are `SSTTTEV.wav`: speaker (two digits), text code (a01 ... b10), emotion letter, version
letter. The speaker table (gender, age) is the corpus documentation's.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import Manifest, Utterance, audio_files, scan_files

NAME = "emodb"
PATTERN = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")
EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
            "F": "happy", "T": "sad", "N": "neutral"}
SPEAKERS = {  # speaker -> (gender, age)
    "03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32),
    "11": ("male", 26), "12": ("male", 30), "13": ("female", 32), "14": ("female", 35),
    "15": ("male", 25), "16": ("female", 31),
}
TEXTS = {"a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"}


def parse(path: Path) -> Utterance | str:
    m = PATTERN.match(path.stem)
    if not m:
        return "name is not SSTTTEV (speaker, text code, emotion letter, version letter)"
    speaker, text, letter, version = m.groups()
    if speaker not in SPEAKERS:
        return f"speaker {speaker} is not one of EmoDB's ten ({', '.join(SPEAKERS)})"
    if text not in TEXTS:
        return f"text code {text} is not one of EmoDB's ten"
    if letter not in EMOTIONS:
        return f"emotion letter {letter} is not one of {''.join(EMOTIONS)}"
    gender, age = SPEAKERS[speaker]
    return Utterance(
        path=str(path.resolve()), corpus=NAME, speaker=f"{NAME}:{speaker}", gender=gender,
        emotion=EMOTIONS[letter], text=text, repetition=version, age=age,
    )


def scan(root: Path, *, strict: bool = False) -> Manifest:
    return scan_files(audio_files(root), parse, strict=strict)


def looks_like(root: Path, sample: list[Path]) -> int:
    return sum(PATTERN.match(p.stem) is not None for p in sample)
