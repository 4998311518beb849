import numpy as np
import pytest
from typer.testing import CliRunner

from voxemo.cli import app

from .conftest import DATA, REPO

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_of_every_command():
    for args in ([], ["data"], ["data", "info"], ["features"]):
        r = run(*args, "--help")
        assert r.exit_code == 0 and "Usage" in r.output
    assert "--kind" in run("features", "--help").output


def test_data_info_on_the_examples_and_manifest(tmp_path):
    r = run("data", "info", REPO / "examples", "--manifest", tmp_path / "m.csv")
    assert r.exit_code == 0, r.output
    assert "8 files" in r.output and "speakers: 2" in r.output
    for emotion in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"):
        assert emotion in r.output
    assert "problems: none" in r.output
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 9
    again = run("data", "info", REPO / "examples", "--manifest", tmp_path / "m.csv")
    assert again.exit_code != 0 and "--force" in again.output  # never overwrites without being asked


def test_data_info_reports_problems_and_unknown_layouts(tmp_path):
    (tmp_path / "song.wav").write_text("not audio")
    r = run("data", "info", tmp_path)
    assert r.exit_code == 2 and "unknown corpus layout" in r.output and "Traceback" not in r.output
    r = run("data", "info", tmp_path / "nope")
    assert r.exit_code == 2 and "not a folder" in r.output


def test_features_writes_an_npz(tmp_path):
    out = tmp_path / "f.npz"
    r = run("features", f"emodb:{DATA / 'original_format' / 'emodb'}", "--kind", "mfcc", "--n-mfcc", "13", "--out", out)
    assert r.exit_code == 0, r.output
    f = np.load(out, allow_pickle=False)
    assert f["features"].shape == (7, 13, 301)
    assert sorted(f["emotion"]) == sorted(["angry", "boredom", "disgust", "fearful", "happy", "neutral", "sad"])
    assert run("features", DATA / "original_format" / "emodb", "--out", out).exit_code == 2  # exists
    r = run("features", DATA / "original_format" / "emodb", "--kind", "pitch", "--out", tmp_path / "g.npz")
    assert r.exit_code == 2 and "--kind must be one of" in r.output


@pytest.mark.parametrize("kind,shape", [("stft", (7, 128, 376)), ("egemaps", (7, 88))])
def test_features_other_kinds(tmp_path, kind, shape):
    out = tmp_path / "f.npz"
    r = run("features", DATA / "original_format" / "emodb", "--kind", kind, "--out", out)
    assert r.exit_code == 0, r.output
    assert np.load(out)["features"].shape == shape


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_build_an_experiment(config):
    """The configs behind RESULTS.md figures stay valid as the code changes."""
    from voxemo.cli import build_experiment

    exp = build_experiment(config)
    assert exp.model
    assert exp.audio.duration, "training needs a fixed clip length"


def test_whole_utterance_config_reads_its_audio_settings():
    from voxemo.cli import build_experiment

    exp = build_experiment(REPO / "configs" / "emodb_whole_utterance.toml")
    assert (exp.model, exp.protocol) == ("voxemo_net", "loso")
    assert (exp.audio.offset, exp.audio.duration, exp.audio.trim) == (0.0, 4.0, "energy")
