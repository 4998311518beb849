"""TESS, the Toronto Emotional Speech Set: two female speakers (OAF, aged 64; YAF, aged 26).

File names are `<speaker>_<word>_<emotion>.wav`, for instance `OAF_back_angry.wav`, `YAF_back_ps.wav`.
Quirks of the public copies handled here: "ps" and "pleasant_surprise(d)" mean surprised;
`OA_bite_neutral.wav` lacks the F of OAF; two files are AIFF under a `.wav` name and one is 96 kHz
(soundfile reads both by content, `load_audio` resamples).
"""

from __future__ import annotations

from pathlib import Path

from . import Manifest, Utterance, audio_files, canonical_emotion, scan_files

NAME = "tess"
SPEAKERS = {"OAF": 64, "YAF": 26}  # speaker -> age; both female
SPEAKER_TYPOS = {"OA": "OAF", "YA": "YAF"}
EMOTIONS = {"angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"}


def parse(path: Path) -> Utterance | str:
    parts = path.stem.split("_")
    if len(parts) < 3:
        return "name is not <speaker>_<word>_<emotion> (e.g. OAF_back_angry)"
    speaker = SPEAKER_TYPOS.get(parts[0].upper(), parts[0].upper())
    if speaker not in SPEAKERS:
        return f"speaker {parts[0]} is not OAF or YAF"
    emotion = canonical_emotion("_".join(parts[2:]))
    if emotion not in EMOTIONS:
        return f"emotion {'_'.join(parts[2:])!r} is not a TESS emotion"
    return Utterance(
        path=str(path.resolve()), corpus=NAME, speaker=f"{NAME}:{speaker}", gender="female",
        emotion=emotion, text=parts[1].lower(), age=SPEAKERS[speaker],
    )


def scan(root: Path, *, strict: bool = False) -> Manifest:
    return scan_files(audio_files(root), parse, strict=strict)


def looks_like(root: Path, sample: list[Path]) -> int:
    return sum(isinstance(parse(p), Utterance) for p in sample)
