"""How many real recordings the no-speech gate would refuse an emotion (it must be about none).

    python benchmarks/no_speech_gate.py [DATA]     # DATA: ../shared/data by default

Decodes every clip of RAVDESS speech, RAVDESS song (singing must count as speech) and EmoDB as
`voxemo predict` does (the bundled model's audio settings), measures the seconds of speech
silero-vad finds (`audio.speech_seconds`), and prints per corpus how many clips fall under
the gate (no frame at `audio.SPEECH_PROB`; shorter than `audio.MIN_SPEECH`) with the smallest amounts found.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from voxemo.audio import AudioError, speech_seconds
from voxemo.corpora import audio_files
from voxemo.predict import BUNDLED
from voxemo.pipeline import load_pipeline

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPORA = ("ravdess_speech", "ravdess_song", "emodb")


def main(data: Path = DATA) -> None:
    audio = load_pipeline(BUNDLED).audio
    t0 = time.time()
    for name in CORPORA:
        files = audio_files(data / name)
        amounts, errors = [], []
        for f in files:
            try:
                amounts.append((speech_seconds(audio.decode(f), audio.sample_rate), f))
            except AudioError as e:
                errors.append(str(e))
        below = [(s, f) for s, f in amounts if s == 0.0]
        least = ", ".join(f"{s:.2f} s ({f.name})" for s, f in sorted(amounts)[:3])
        print(f"{name}: {len(files)} clips, {len(below)} with no speech, "
              f"{len(errors)} unreadable; least speech: {least}", flush=True)
        for s, f in below:
            print(f"  no speech: {f} ({s:.2f} s)")
        for e in errors:
            print(f"  error: {e}")
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
