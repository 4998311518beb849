"""The model that ships inside voxemo: loads offline, describes itself, and is honest about its data."""

import json
from pathlib import Path

import pytest

import voxemo
from voxemo.corpora import label_from_name, scan
from voxemo.predict import BUNDLED

from .conftest import REPO


def test_bundled_model_ships_and_loads_without_network():
    weights, desc = BUNDLED.with_suffix(".safetensors"), BUNDLED.with_suffix(".json")
    assert weights.is_file() and desc.is_file()
    assert weights.stat().st_size < 5_000_000  # a few MB
    model = voxemo.load_model()
    assert model.labels == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    meta = json.loads(desc.read_text())
    assert meta["model"]["name"] == "voxemo_net" and "CC BY-NC-SA 4.0" in meta["licence"]
    assert set(meta["test_metrics"]) == {"speech", "song"}


def test_example_clips_come_from_speakers_held_out_of_training():
    meta = json.loads(BUNDLED.with_suffix(".json").read_text())
    held_out = set(meta["test_speakers"])
    examples = scan(REPO / "examples")
    assert {u.speaker for u in examples} <= held_out
    assert not held_out & set(meta["validation_speakers"])


def test_bundled_model_on_the_examples():
    model = voxemo.load_model()
    paths = sorted((REPO / "examples").glob("*.flac"))
    results = model.predict_many(paths)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in results)
    right = sum(r["label"] == label_from_name(p) for r, p in zip(results, paths))
    # The eight clips, one per emotion, are from two held-out actors; chance is 1 in 8.
    assert right >= 3, [(Path(p).name, r["label"]) for p, r in zip(paths, results)]
