"""Adaptation without labels (`voxemo.adapt`, `voxemo adapt`): a model's input standardisation refit on
a user's recordings, heard as `voxemo predict` hears them; nothing else changes."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from voxemo.adapt import MIN_CLIPS, adapt, check_adaptable
from voxemo.cli import app
from voxemo.fusion import Fusion
from voxemo.pipeline import PipelineError, load_pipeline

from .conftest import DATA
from .small_pipeline import save_small_pipeline

OTHER_VOICE = sorted((DATA / "ravdess_speech" / "Actor_08").glob("*.flac"))[: MIN_CLIPS + 4]


@pytest.fixture(scope="module")
def small_path(tmp_path_factory, one_torch_thread):
    return save_small_pipeline(tmp_path_factory.mktemp("adapt") / "small")


@pytest.fixture()
def recordings(tmp_path):
    """A user's folder: clips of a voice the pipeline never heard, in a room that tilts the spectrum (a
    first-order low-pass), one file of noise, one silent and one that is not audio."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for p in OTHER_VOICE:
        x, sr = sf.read(p, dtype="float32")
        y = np.copy(x)
        for n in range(1, len(x)):
            y[n] = 0.6 * y[n - 1] + 0.4 * x[n]
        sf.write(folder / (p.stem + ".wav"), y, sr)
    rng = np.random.default_rng(0)
    sf.write(folder / "noise.wav", (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000)
    sf.write(folder / "silent.wav", np.zeros(48000, np.float32), 16000)
    (folder / "notes.wav").write_text("not audio")
    return folder


def test_adapt_standardises_the_users_recordings_as_training_did_and_changes_nothing_else(small_path, recordings):
    """After adaptation the user's speech, cut and heard as predict hears it, comes out of the
    normaliser with mean 0 and std 1 in every bin (as the training clips did before); the model's
    weights, labels and audio settings are untouched; non-speech and unreadable files are skipped and
    reported; the saved pipeline says it was adapted and predicts the same."""
    pipe = load_pipeline(small_path)
    before = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    got = adapt(pipe, sorted(recordings.iterdir()))
    assert got["clips"] == len(OTHER_VOICE)
    assert sorted(map(str, got["no_speech"])) == [str(recordings / "noise.wav"), str(recordings / "silent.wav")]
    assert [e["path"] for e in got["errors"]] == [str(recordings / "notes.wav")] and "notes.wav" in got["errors"][0]["error"]
    windows = np.concatenate([pipe.audio.windows(pipe.audio.decode(recordings / (p.stem + ".wav"))) for p in OTHER_VOICE])
    with torch.no_grad():
        f = pipe.features(torch.from_numpy(windows))  # (W, F, T), normalised
    per_bin = f.movedim(-2, 0).flatten(1)
    torch.testing.assert_close(per_bin.mean(1), torch.zeros(per_bin.shape[0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(per_bin.std(1), torch.ones(per_bin.shape[0]), atol=1e-3, rtol=0)
    for k, v in pipe.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert pipe.meta["adapted"]["clips"] == len(OTHER_VOICE)
    unadapted = load_pipeline(small_path)
    assert not torch.allclose(pipe.normalizer.mean, unadapted.normalizer.mean)
    assert pipe.labels == unadapted.labels and pipe.audio == unadapted.audio
    pipe.save(recordings.parent / "adapted")
    again = load_pipeline(recordings.parent / "adapted")
    clips = [pipe.audio.decode(p) for p in OTHER_VOICE[:3]]
    np.testing.assert_allclose(again.hear(clips), pipe.hear(clips), atol=1e-6)
    assert again.meta["adapted"]["clips"] == len(OTHER_VOICE)


def test_adapt_refuses_too_few_recordings_and_models_it_cannot_adapt(small_path, recordings, tmp_path):
    pipe = load_pipeline(small_path)
    mean = pipe.normalizer.mean.clone()
    with pytest.raises(PipelineError, match=f"3 of 3 recordings hold speech; adaptation needs at least {MIN_CLIPS}"):
        adapt(pipe, sorted(recordings.glob("03-*.wav"))[:3])
    assert torch.equal(pipe.normalizer.mean, mean)  # left as it was
    per_speaker = load_pipeline(small_path)
    per_speaker.meta["speaker_norm"] = True
    with pytest.raises(PipelineError, match="already standardises each speaker"):
        check_adaptable(per_speaker)
    with pytest.raises(PipelineError, match="adapt each member"):
        check_adaptable(Fusion([load_pipeline(small_path), load_pipeline(small_path)]))


def test_cli_adapts_writes_a_model_predict_uses_and_never_overwrites_unasked(small_path, recordings, tmp_path):
    run = CliRunner().invoke
    out = tmp_path / "mine-model"
    r = run(app, ["adapt", str(recordings), "--model", str(small_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"on {len(OTHER_VOICE)} recordings with speech (2 without speech and 1 unreadable skipped)" in r.output
    assert "notes.wav" in r.output and "Traceback" not in r.output
    r = run(app, ["predict", str(recordings / (OTHER_VOICE[0].stem + ".wav")), "--model", str(out), "--format", "json"])
    assert r.exit_code == 0 and '"label"' in r.output
    r = run(app, ["adapt", str(recordings), "--model", str(small_path), "--out", str(out)])
    assert r.exit_code != 0 and "--force" in r.output
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(recordings.glob("03-*.wav"))[:2]:
        shutil.copy(p, few)
    r = run(app, ["adapt", str(few), "--model", str(small_path), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "adaptation needs at least" in r.output and "Traceback" not in r.output
