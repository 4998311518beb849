"""CREMA-D (Cao et al. 2014): 91 actors, `1001_DFA_ANG_XX.wav`.

Fields: actor (1001-1091), sentence code (12), emotion (ANG DIS FEA HAP NEU SAD), level (LO, MD, HI,
XX unspecified). Gender and age come from `VideoDemographics.csv` when it is in the corpus folder or
its parent; without it gender is "unknown".
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from . import Manifest, Problem, Utterance, audio_files, scan_files

NAME = "cremad"
PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}
DEMOGRAPHICS = "VideoDemographics.csv"


def read_demographics(root: Path) -> dict[str, tuple[str, int | None]]:
    """Actor id -> (gender, age) from VideoDemographics.csv in root or its parent; {} if absent."""
    for folder in (root, root.parent):
        table = folder / DEMOGRAPHICS
        if table.is_file():
            with open(table, newline="", encoding="utf-8-sig") as f:
                return {
                    row["ActorID"].strip(): (
                        row.get("Sex", "").strip().lower() or "unknown",
                        int(row["Age"]) if row.get("Age", "").strip().isdigit() else None,
                    )
                    for row in csv.DictReader(f)
                }
    return {}


def parser(demographics: dict[str, tuple[str, int | None]]):
    def parse(path: Path) -> Utterance | str:
        m = PATTERN.match(path.stem)
        if not m:
            return "name is not <actor>_<sentence>_<emotion>_<level> (e.g. 1001_DFA_ANG_XX)"
        actor, sentence, emotion, level = m.groups()
        if sentence not in SENTENCES:
            return f"sentence code {sentence} is not one of CREMA-D's twelve"
        if emotion not in EMOTIONS:
            return f"emotion code {emotion} is not one of {', '.join(EMOTIONS)}"
        if level not in LEVELS:
            return f"level {level} is not LO, MD, HI or XX"
        gender, age = demographics.get(actor, ("unknown", None))
        return Utterance(
            path=str(path.resolve()), corpus=NAME, speaker=f"{NAME}:{actor}", gender=gender,
            emotion=EMOTIONS[emotion], intensity=LEVELS[level], text=sentence, age=age,
        )

    return parse


PREFERRED = {".wav": 0, ".flac": 1}  # the public copy ships AudioWAV/ and AudioMP3/: one file per clip


def scan(root: Path, *, strict: bool = False) -> Manifest:
    files: dict[str, Path] = {}
    duplicates: list[Path] = []
    for path in sorted(audio_files(root), key=lambda p: PREFERRED.get(p.suffix.lower(), 2)):
        if path.stem in files:
            duplicates.append(path)
        else:
            files[path.stem] = path
    manifest = scan_files(sorted(files.values()), parser(read_demographics(root)), strict=strict)
    manifest.problems += [Problem(str(p), f"another copy of {files[p.stem].name} (skipped)") for p in duplicates]
    return manifest


def looks_like(root: Path, sample: list[Path]) -> int:
    parse = parser({})
    return sum(isinstance(parse(p), Utterance) for p in sample)
