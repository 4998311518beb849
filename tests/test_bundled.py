"""The models that ship inside voxemo: they load offline, describe themselves, are honest about their
data, and the default one holds when the same clip is played quieter."""

import json
from pathlib import Path

import numpy as np
import pytest

import voxemo
from voxemo.audio import load_audio
from voxemo.corpora import label_from_name, scan
from voxemo.predict import BUNDLED_MODELS, DEFAULT_MODEL

from .conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.flac"))


def meta(name: str) -> dict:
    return json.loads(BUNDLED_MODELS[name].with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def default():
    return voxemo.load_model()


def test_the_default_is_the_encoder_model_and_voxemo_net_stays_available(default):
    assert DEFAULT_MODEL == "voxemo_whisper"
    assert default.pipeline.model.name in {"encoder_head", "encoder_ensemble"} and default.pipeline.encoder is not None
    assert default.labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    small = voxemo.load_model("voxemo_net")
    assert small.pipeline.model.name == "voxemo_net" and len(small.labels) == 8


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_bundled_models_ship_small_and_say_their_licence(name):
    weights = BUNDLED_MODELS[name].with_suffix(".safetensors")
    assert weights.is_file() and weights.stat().st_size < 20_000_000  # not the encoder: 20 M parameters, 40 MB in float16
    m = meta(name)
    assert "CC BY-NC-SA 4.0" in m["licence"]
    if name == "voxemo_whisper":
        assert "MIT" in m["licence"] and set(m["test_metrics"]) == {"speech", "song", "emodb"}
        assert m["encoder"]["name"] == "whisper-base" and len(m["encoder"]["sha256"]) == 64
        cal = m["calibration"]
        assert cal["temperature"] > 0 and cal["ece_after"] <= cal["ece_before"]


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_example_clips_come_from_speakers_held_out_of_training(name):
    held_out = set(meta(name)["test_speakers"])
    assert {u.speaker for u in scan(REPO / "examples")} <= held_out
    assert not held_out & set(meta(name)["validation_speakers"])


def test_default_model_on_the_examples(default):
    results = default.predict_many(EXAMPLES)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in results)
    merged = {"calm": "neutral"}  # the default's label set (scripts/train_bundled_encoder.py)
    right = sum(r["label"] == merged.get(label_from_name(p), label_from_name(p)) for r, p in zip(results, EXAMPLES))
    # Eight clips, one per emotion, from two held-out actors; chance is 1 in 7.
    assert right >= 4, [(Path(p).name, r["label"]) for p, r in zip(EXAMPLES, results)]


def test_default_model_keeps_its_labels_when_the_clips_are_played_quieter(default):
    """Each clip is levelled before the encoder: 0 to -30 dB of gain changes no label."""
    for path in EXAMPLES:
        x = load_audio(path)
        labels = {g: default.predict(x * np.float32(10 ** (g / 20)), sr=16000)["label"] for g in (0, -30)}
        assert labels[0] == labels[-30], path.name


def test_default_model_runs_only_the_encoder_blocks_its_head_reads(default):
    """The head reads layers 0-4: blocks 5 and 6 are not run, and the answer is the same as with them."""
    import torch

    stats = default.pipeline.frontend.features
    assert stats.upto == max(default.pipeline.model.layers) < default.pipeline.encoder.cfg.layers
    x = torch.from_numpy(load_audio(EXAMPLES[0]))[None]
    with torch.inference_mode():
        short = default.pipeline(x)
        stats.upto = None
        try:
            full = default.pipeline(x)
        finally:
            stats.upto = max(default.pipeline.model.layers)
    torch.testing.assert_close(short, full, rtol=0, atol=1e-6)
