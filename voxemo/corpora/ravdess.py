"""RAVDESS (Livingstone & Russo 2018): audio-only speech and song, 24 actors.

File names are seven two-digit fields, `MM-VC-EE-II-SS-RR-AA.wav`: modality (01 audio-video, 02
video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion (01-08), intensity (01 normal,
02 strong; neutral has no strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting
by the door"), repetition (01, 02), actor (01-24; odd male, even female). Song has emotions 01-06.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import Manifest, Utterance, audio_files, scan_files

NAME = "ravdess"
PATTERN = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
            "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}
SONG_EMOTIONS = {"01", "02", "03", "04", "05", "06"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def parse(path: Path) -> Utterance | str:
    """An Utterance from a RAVDESS file name, or the reason the name does not fit."""
    m = PATTERN.match(path.stem)
    if not m:
        return "name is not MM-VC-EE-II-SS-RR-AA (seven two-digit fields)"
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    if modality not in MODALITIES:
        return f"modality {modality} is not 01, 02 or 03"
    if modality == "02":
        return "modality 02 is video-only (no audio)"
    if channel not in CHANNELS:
        return f"vocal channel {channel} is not 01 (speech) or 02 (song)"
    if emotion not in EMOTIONS or (channel == "02" and emotion not in SONG_EMOTIONS):
        return f"emotion {emotion} is not a RAVDESS {CHANNELS[channel]} emotion"
    if intensity not in INTENSITIES:
        return f"intensity {intensity} is not 01 or 02"
    if emotion == "01" and intensity == "02":
        return "neutral has no strong intensity in RAVDESS"
    if statement not in STATEMENTS or repetition not in ("01", "02"):
        return f"statement {statement} / repetition {repetition} out of range"
    if not 1 <= int(actor) <= 24:
        return f"actor {actor} is not 01-24"
    return Utterance(
        path=str(path.resolve()),
        corpus=NAME,
        speaker=f"{NAME}:{actor}",
        gender="male" if int(actor) % 2 else "female",
        emotion=EMOTIONS[emotion],
        intensity=INTENSITIES[intensity],
        text=statement,
        channel=CHANNELS[channel],
        repetition=repetition,
        modality=modality,
    )


def scan(root: Path, *, strict: bool = False) -> Manifest:
    return scan_files(audio_files(root), parse, strict=strict)


def looks_like(root: Path, sample: list[Path]) -> int:
    return sum(PATTERN.match(p.stem) is not None for p in sample)
