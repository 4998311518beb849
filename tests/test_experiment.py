"""The train / cv / evaluate commands end to end, on a few actors and one short epoch."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voxemo.cli import app

from .conftest import DATA, REPO, link_actors

runner = CliRunner()
QUICK = ["--epochs", "1", "--batch-size", "32"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def six_actors(tmp_path_factory):
    """RAVDESS speech actors 1-6 (3 F, 3 M), linked into a folder of their own."""
    return link_actors(tmp_path_factory.mktemp("ravdess6"))


def test_cv_writes_the_run_directory_and_resumes(six_actors, tmp_path):
    out = tmp_path / "run"
    r = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "2", "--out", out, *QUICK)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "speaker-kfold" and m["speaker_independent"] is True
    assert m["classes"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    for k in ("ua", "wa", "macro_f1"):
        assert set(m[k]) >= {"mean", "std", "folds"} and len(m[k]["folds"]) == 2
        assert 0 <= m[k]["mean"] <= 1
    assert (out / "report.md").is_file() and (out / "confusion.png").is_file() and (out / "config.json").is_file()
    assert "speaker-independent" in (out / "report.md").read_text()
    assert "speaker k-fold, 2 of 3 folds" in (out / "report.md").read_text()  # --max-folds: 2 of the 3
    assert "cv: cnn1d_baseline, speaker-kfold fold 2/2: UA" in r.output  # a line as each fold finishes
    again = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "2", "--out", out, *QUICK)
    assert again.exit_code == 2 and "--resume" in again.output  # never overwrites a finished run
    resumed = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "2", "--out", out, "--resume", *QUICK)
    assert resumed.exit_code == 0, resumed.output
    resumed_m = json.loads((out / "metrics.json").read_text())
    assert resumed_m["ua"] == m["ua"]  # finished folds are reused
    assert resumed_m["seconds"] >= 0.9 * m["seconds"]  # and their time still counts
    assert "cv: cnn1d_baseline" not in resumed.output  # kept folds print no line
    # other settings cannot resume it: its finished folds would be mixed into a run they did not make
    other = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "2", "--out", out,
                "--resume", "--epochs", "2", "--batch-size", "32")
    assert other.exit_code == 2 and str(out) in other.output and "epochs: 1 -> 2" in " ".join(other.output.split())
    assert json.loads((out / "metrics.json").read_text())["ua"] == m["ua"]  # and the run is left as it was
    more = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "3", "--out", out, "--resume", *QUICK)
    assert more.exit_code == 0, more.output  # more of the same folds is the same run
    assert json.loads((out / "metrics.json").read_text())["ua"]["folds"][:2] == m["ua"]["folds"]


def test_an_interrupted_train_resumes_only_under_its_own_settings(six_actors, tmp_path):
    from voxemo.experiment import Experiment, record_settings

    out = tmp_path / "net"  # as an interrupted `voxemo train --epochs 1` leaves it: its checkpoint folder
    record_settings(Path(f"{out}.checkpoint"), Experiment(model="cnn1d_baseline", train={"epochs": 1, "batch_size": 32}),
                    resume=False)
    other = run("train", six_actors, "--model", "cnn1d_baseline", "--out", out, "--resume", "--epochs", "2",
                "--batch-size", "32")
    assert other.exit_code == 2 and "epochs: 1 -> 2" in " ".join(other.output.split())
    assert not Path(f"{out}.json").exists()  # nothing trained on top of the other run's epochs


def test_evaluate_takes_the_bundled_folder_and_names_classes():
    """Issue 13.7: the folder the README names works, and per-class entries carry class names."""
    r = run("evaluate", REPO / "voxemo" / "assets" / "voxemo_net", f"emodb:{DATA / 'original_format' / 'emodb'}", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert set(m["per_class"]) == set(m["classes"]) and "angry" in m["per_class"]


def test_random_protocol_is_labelled_speaker_dependent(six_actors, tmp_path):
    out = tmp_path / "run"
    r = run("cv", six_actors, "--model", "cnn1d_baseline", "--protocol", "random", "--out", out,
            "--emotions", "neutral,happy,sad,angry", *QUICK)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["speaker_independent"] is False and m["classes"] == ["neutral", "happy", "sad", "angry"]
    assert "speaker-dependent" in (out / "report.md").read_text()


def test_train_then_evaluate_on_another_corpus(six_actors, tmp_path):
    p = tmp_path / "model"
    r = run("train", six_actors, "--model", "cnn1d_baseline", "--out", p, *QUICK)
    assert r.exit_code == 0, r.output
    desc = json.loads((tmp_path / "model.json").read_text())
    assert desc["protocol"] == "speaker-holdout" and len(desc["validation_speakers"]) == 2
    assert run("train", six_actors, "--model", "cnn1d_baseline", "--out", p, *QUICK).exit_code == 2  # exists
    r = run("evaluate", p, f"emodb:{DATA / 'original_format' / 'emodb'}", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["classes"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]  # shared with RAVDESS
    assert m["unmapped"] == ["boredom"] and m["n"] == 6 and m["protocol"] == "held-out corpus"


def test_bad_model_and_data_give_clear_errors(six_actors, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("cv", six_actors, "--model", "resnet9000")
    assert r.exit_code == 2 and "unknown model" in r.output
    r = run("cv", tmp_path / "nothing", "--model", "voxemo_net")
    assert r.exit_code == 2 and "not a folder" in r.output
    assert not (tmp_path / "runs").exists()  # a failed command leaves no empty run directory behind
    r = run("evaluate", tmp_path / "nope", six_actors)
    assert r.exit_code == 2 and "pipeline file not found" in r.output
    assert "voxemo_net" in run("models").output


def test_toml_config_gender_task_and_flags_override(six_actors, tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('model = "cnn1d_baseline"\ntask = "gender"\nfolds = 3\nmax_folds = 1\n'
                   '[train]\nepochs = 3\nbatch_size = 64\nlr = 0.003\n[frontend]\nn_mfcc = 20\n')
    out = tmp_path / "run"
    r = run("cv", six_actors, "--config", cfg, "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    c = json.loads((out / "config.json").read_text())
    assert m["classes"] == ["female", "male"] and m["task"] == "gender"
    assert c["train_resolved"]["epochs"] == 1 and c["train_resolved"]["batch_size"] == 64  # flag beats file
    assert c["frontend_resolved"]["n_mfcc"] == 20
    assert m["folds_total"] == 3 and len(m["folds"]) == 1 and "1 of 3 folds" in (out / "report.md").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    r = run("cv", six_actors, "--config", bad)
    assert r.exit_code == 2 and "not valid TOML" in r.output


def test_per_gender_models_and_filters(six_actors, tmp_path):
    out = tmp_path / "run"
    r = run("cv", six_actors, "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "1", "--per-gender",
            "--intensity", "strong", "--emotions", "happy,sad,angry", "--out", out, *QUICK)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["happy", "sad", "angry"] and m["n_utterances"] == 6 * 3 * 4  # strong only
    fold = next((out / "fold01").iterdir()).parent
    assert (fold / "female").is_dir() and (fold / "male").is_dir()  # one model per gender


def test_extra_training_speakers_join_training_only(six_actors, tmp_path):
    """`--extra-train`: another corpus's clips join every fold's training side and never its validation or
    test side: RAVDESS song shares speech's actors, so a fold's validation and test actors' songs stay
    out; only the run's classes join (EmoDB's boredom does not); the test folds stay the same."""
    from voxemo.experiment import Experiment, load_corpora, train_pipeline
    from voxemo.runs import plan_folds

    song = link_actors(tmp_path / "song", "ravdess_song", (1, 2, 7))  # two actors of the speech run, one it lacks
    emodb = tmp_path / "emodb" / "wav"
    emodb.mkdir(parents=True)
    for f in sorted((DATA / "emodb" / "wav").glob("03*")):
        (emodb / f.name).symlink_to(f)
    manifest = load_corpora([str(six_actors)])
    common = dict(model="encoder_head", folds=3, val_speakers=1)
    plain = plan_folds(manifest, Experiment(**common))
    plan = plan_folds(manifest, Experiment(**common, extra_train=(str(song), str(emodb.parent))))
    assert plan.classes == plain.classes and plan.utts[: len(plain.utts)] == plain.utts
    extra = plan.utts[len(plain.utts):]
    assert {u.corpus for u in extra} == {"ravdess", "emodb"} and {u.channel for u in extra if u.corpus == "ravdess"} == {"song"}
    assert "boredom" not in {u.emotion for u in extra} and len({u.emotion for u in extra if u.corpus == "emodb"}) == 6
    assert [plan.classes[k] for k in plan.y[len(plain.utts):]] == [u.emotion for u in extra]
    for before, fold in zip(plain.folds, plan.folds):
        assert list(fold.test) == list(before.test) and list(fold.val) == list(before.val)
        held = {plan.utts[i].speaker for i in [*fold.val, *fold.test]}
        added = [plan.utts[i] for i in fold.train if i >= len(plain.utts)]
        assert set(fold.train) >= set(before.train)
        assert added == [u for u in extra if u.speaker not in held]  # every other extra clip trains
    assert any(len(f.train) - len(b.train) < len(extra) for f, b in zip(plan.folds, plain.folds))  # actor 1's or 2's songs held
    with pytest.raises(ValueError, match="extra_train: no clip"):
        plan_folds(manifest, Experiment(**common, emotions=("calm",), extra_train=(str(emodb.parent),)))
    with pytest.raises(ValueError, match="more DATA arguments"):
        train_pipeline(manifest, Experiment(**common, extra_train=(str(song),)))
    r = run("cv", six_actors, "--model", "encoder_head", "--emotions", "calm", "--extra-train", emodb.parent,
            "--out", tmp_path / "run")
    assert r.exit_code == 2 and "extra_train: no clip" in r.output and "emodb" in r.output
