"""How many real recordings the no-speech gate would refuse an emotion (it must be about none).

    python benchmarks/no_speech_gate.py [DATA]     # DATA: ../shared/data by default

Decodes every clip of RAVDESS speech, RAVDESS song (singing must count as speech) and EmoDB as
`voxemo predict` does (the bundled model's audio settings), takes each clip's highest silero-vad frame
probability (`audio.speech_probabilities`), and prints per corpus how many clips the no-speech
gate would refuse an emotion (no frame at `audio.SPEECH_PROB`) and the lowest peaks found.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from voxemo.audio import SPEECH_PROB, AudioError, speech_probabilities
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
                amounts.append((float(speech_probabilities(audio.decode(f), audio.sample_rate).max(initial=0.0)), f))
            except AudioError as e:
                errors.append(str(e))
        below = [(s, f) for s, f in amounts if s < SPEECH_PROB]
        least = ", ".join(f"{s:.2f} ({f.name})" for s, f in sorted(amounts)[:3])
        peaks = np.array([s for s, _ in amounts])
        print(f"{name}: {len(files)} clips, {len(below)} with no speech, "
              f"{len(errors)} unreadable; lowest peak speech probabilities: {least}", flush=True)
        print(f"  peak probability quantiles 1/5/50 %: {np.quantile(peaks, [0.01, 0.05, 0.5]).round(2).tolist()}")
        for s, f in below:
            print(f"  no speech: {f} (peak {s:.2f})")
        for e in errors:
            print(f"  error: {e}")
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
