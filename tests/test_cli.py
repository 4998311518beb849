import numpy as np
import pytest
from typer.testing import CliRunner

from voxemo.cli import app

from .conftest import DATA, REPO

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def command_paths(group=None, prefix=()):
    """Every command and subcommand of the app, as argument lists: [], ["data"], ["data", "info"], ..."""
    import typer

    group = group or typer.main.get_command(app)
    yield list(prefix)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer's own click: no click.Group to test against)
            yield from command_paths(cmd, (*prefix, name))
        else:
            yield [*prefix, name]


def test_help_of_every_command():
    paths = list(command_paths())
    assert ["data", "info"] in paths and ["serve"] in paths and len(paths) > 10
    for args in paths:
        r = run(*args, "--help")
        assert r.exit_code == 0 and "Usage" in r.output, (args, r.output)
    assert "--kind" in run("features", "--help").output


@pytest.mark.parametrize("command", ["cv", "train"])
def test_help_of_training_commands_names_the_config_tables(command):
    from voxemo.config import TABLES

    text = " ".join(run(command, "--help").output.split())
    assert TABLES == ("train", "frontend", "model_overrides", "audio")
    for table in TABLES:
        assert f"[{table}]" in text


def test_models_lists_every_name_cv_accepts():
    r = run("cv", REPO / "examples", "--model", "no_such_model")
    assert r.exit_code == 2 and "known: " in r.output
    accepted = " ".join(r.output.split("known: ")[1].split()).split(", ")
    listed = run("models")
    assert listed.exit_code == 0
    rows = {line.split()[0] for line in listed.output.splitlines() if line.split()}
    assert {"egemaps_svm", "compare_svm", "voxemo_net"} <= set(accepted) <= rows


def test_user_text_with_square_brackets_prints_verbatim(tmp_path):
    """Paths and values reach the terminal as they are: rich markup never eats '[serve]' or '[1]'."""
    folder = tmp_path / "x[serve]"
    folder.mkdir()
    (folder / "a[1].wav").write_text("not audio")
    r = run("predict", folder / "a[1].wav")
    assert r.exit_code == 1 and f"{folder / 'a[1].wav'}: " in r.output, r.output
    r = run("data", "info", folder / "b[bold]")
    assert r.exit_code == 2 and f"{folder / 'b[bold]'}" in r.output, r.output
    r = run("cv", folder, "--model", "[red]x[/]")
    assert r.exit_code == 2 and "unknown model '[red]x[/]'" in r.output, r.output


def test_install_hints_keep_their_extras(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    r = run("serve")
    assert r.exit_code == 2 and "(fastapi is missing): pip install 'voxemo[serve]'" in r.output, r.output


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
    from voxemo.experiment import Experiment, uses_encoder

    exp = Experiment.from_config(config)
    assert exp.model
    assert exp.audio.duration or uses_encoder(exp), "training needs a fixed clip length (encoder models take whole clips)"


def test_whole_utterance_config_reads_its_audio_settings():
    from voxemo.experiment import Experiment

    exp = Experiment.from_config(REPO / "configs" / "emodb_whole_utterance.toml")
    assert (exp.model, exp.protocol) == ("voxemo_net", "loso")
    assert (exp.audio.offset, exp.audio.duration, exp.audio.trim) == (0.0, 4.0, "energy")


def test_overrides_win_over_the_config_and_none_is_ignored(tmp_path):
    from voxemo.experiment import Experiment

    path = tmp_path / "c.toml"
    path.write_text('model = "voxemo_net"\nseed = 3\n[train]\nepochs = 5\nlr = 0.01\n[model_overrides]\ngru = 8\n')
    exp = Experiment.from_config(path, seed=None, epochs=2, lr=None, emotions="neutral, sad", protocol="loso")
    assert (exp.seed, exp.protocol, exp.emotions) == (3, "loso", ("neutral", "sad"))
    assert exp.train == {"epochs": 2, "lr": 0.01} and exp.model_overrides == {"gru": 8}
    assert exp.train_config().epochs == 2 and exp.audio.duration == 3.0  # the papers' crop unless [audio] says
    assert Experiment.from_config(None, model="cnn_stft").model == "cnn_stft"


@pytest.mark.parametrize("text,named", [
    ('[model]\nname = "voxemo_net"\n', "unknown table [model]"),
    ('model = "voxemo_net"\nepochs = 3\n', "unknown key 'epochs'"),
    ('model = "voxemo_net"\n[train]\nepoch = 3\n', "[train]: unknown key 'epoch'"),
    ('model = "voxemo_net"\n[audio]\nrate = 8000\n', "[audio]: unknown key 'rate'"),
    ('model = "voxemo_net"\n[frontend]\nmels = 8\n', "[frontend]: unknown key 'mels'"),
    ('model = "voxemo_net"\n[model_overrides]\nchanels = [8, 16]\n', "[model_overrides] (voxemo_net): unknown key 'chanels'"),
])
def test_unknown_tables_and_keys_are_named_with_the_valid_ones(tmp_path, text, named):
    from voxemo.config import ConfigError
    from voxemo.experiment import Experiment

    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="valid") as e:
        Experiment.from_config(path)
    assert named in str(e.value) and str(path) in str(e.value)
    r = run("cv", REPO / "examples", "--config", path)
    assert r.exit_code == 2 and named in r.output and "Traceback" not in r.output
    if "table" in named:
        assert "[train], [frontend], [model_overrides], [audio]" in str(e.value)


@pytest.mark.parametrize("args,words", [
    (["serve", "--port", "99999"], "65535"),
    (["serve", "--port", "0"], "--port"),
    (["cv", "EXAMPLES", "--model", "voxemo_net", "--epochs", "0"], "epochs must be a whole number of at least 1, not 0"),
    (["train", "EXAMPLES", "--model", "voxemo_net", "--out", "OUT", "--epochs", "0"], "epochs must be"),
    (["cv", "EXAMPLES", "--model", "voxemo_net", "--max-folds", "0"], "max_folds must be"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, args, words):
    """Issue 13.5: no OverflowError or traceback for an impossible port or zero epochs."""
    args = [str(REPO / "examples") if a == "EXAMPLES" else str(tmp_path / "m") if a == "OUT" else a for a in args]
    r = run(*args)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, r.output
    assert not r.exception or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("flags,named", [
    (["--emotions", "angry,sad,hapy"], "emotions: 'hapy' not in the data; valid: angry, boredom, disgust, fearful, happy"),
    (["--channel", "sog"], "channel: 'sog' not in the data; valid: speech"),
    (["--gender", "femal"], "gender: 'femal' not in the data; valid: female, male"),
])
@pytest.mark.parametrize("model", ["egemaps_svm", "cnn1d_baseline"])
def test_misspelt_filters_are_named_with_the_valid_ones(tmp_path, flags, named, model):
    """Issue 13.4: a misspelt filter value is an error naming it, for the networks and the SVM alike;
    no run directory is left and no progress bar stays on screen."""
    r = run("cv", DATA / "emodb", "--model", model, *flags, "--out", tmp_path / "run")
    assert r.exit_code == 2 and named in r.output and "Traceback" not in r.output, r.output
    assert "greater than one" not in r.output and "training" not in r.output  # bars cleared on the error
