"""A small, quickly built pipeline for the service tests and the inference benchmark (untrained).

An untrained model is enough to test the service: it answers with real labels and probabilities, and
the same clip always gives the same answer.
"""

from pathlib import Path

import numpy as np
import torch

from voxemo.audio import load_audio

from .conftest import DATA

CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
ACTOR = DATA / "ravdess_speech" / "Actor_01"


def save_small_pipeline(path: Path) -> Path:
    """Build a small voxemo_net pipeline, fit its normaliser on eight RAVDESS clips, save it at `path`."""
    from voxemo.experiment import Experiment, build

    pipe = build(Experiment(model="voxemo_net", model_overrides={"channels": [8, 16, 16, 16], "gru": 16}), CLASSES)
    clips = sorted(ACTOR.glob("*.flac"))[::7][:8]
    a = pipe.audio
    waves = torch.from_numpy(np.stack([load_audio(p, a.sample_rate, offset=a.offset, duration=a.duration) for p in clips]))
    pipe.normalizer.fit(pipe.frontend(waves))
    pipe.meta.update(corpora=["ravdess"], protocol="speaker-holdout", validation_speakers=["ravdess:01", "ravdess:02"],
                     validation_metrics={"ua": 0.125, "wa": 0.125, "macro_f1": 0.03, "classes": CLASSES})
    pipe.save(path, overwrite=True)
    return path
