"""Every recipe parses into valid experiments; one recipe runs end to end in --quick mode."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voxemo.cli import app, fold_printer
from voxemo.experiment import Experiment
from voxemo.recipes import list_recipes, load_recipe, row_experiments, same_folds

from .conftest import DATA, link_actors


def test_every_recipe_row_builds_both_experiments():
    assert list_recipes() == ["baselines", "seed000", "seed001", "seed002", "seed003", "seed004"]
    for name in list_recipes():
        recipe = load_recipe(name)
        for row in recipe["row"]:
            exps = row_experiments(recipe, row)
            assert exps["paper_protocol"]["protocol"] in ("random", "repeated-kfold")
            if "speaker_independent" in row.get("protocols", exps):
                assert exps["speaker_independent"]["protocol"] in ("speaker-kfold", "loso")
            else:  # only the leaky row runs one protocol
                assert list(exps) == ["paper_protocol"] and "LEAKY" in row["label"]
            for d in exps.values():
                e = Experiment(**d)
                if not e.is_baseline:
                    e.train_config(), e.frontend_config()  # valid model, training and front-end settings
                assert e.model == row["common"]["model"]


def test_recipe_settings_follow_the_papers():
    r = load_recipe("seed003")
    e = Experiment(**row_experiments(r, r["row"][0])["paper_protocol"])
    assert e.train_config().augment.noisy_copies == 2 and e.train_config().augment.noise_snr == (15.0, 30.0)
    assert e.ratios == (0.8, 0.1, 0.1) and e.gender == "male"
    r = load_recipe("seed002")
    e = Experiment(**row_experiments(r, r["row"][0])["paper_protocol"])
    assert e.intensity == "strong" and "neutral" not in e.emotions and e.ratios == (0.7, 0.15, 0.15)
    read_over_time = [row for row in r["row"] if "time mean" in row["label"]]  # the other reading of "mean MFCC"
    assert [row["common"].get("task", "emotion") for row in read_over_time] == ["gender", "emotion"]
    for row in read_over_time:
        e = Experiment(**row_experiments(r, row, full=True)["speaker_independent"])
        assert e.frontend_config().kind == "mfcc_time_mean" and e.frontend_config().n_mfcc == 40
    r = load_recipe("seed004")
    e = Experiment(**row_experiments(r, r["row"][0])["paper_protocol"])
    assert e.protocol == "repeated-kfold" and e.train_config().optimizer == "sgd"


@pytest.fixture
def half_of_six_actors(tmp_path):
    """A data root whose ravdess_speech holds actors 1-6 (the quick run's six speakers), statement 1
    only: every emotion, half the clips, half the run's time."""
    root = tmp_path / "data"
    link_actors(root / "ravdess_speech", pattern="*-01-??-??.flac")  # mo-vc-em-in-STATEMENT-rep-actor
    return root


def test_quick_reproduce_writes_the_table(half_of_six_actors, tmp_path):
    out, data = tmp_path / "repro", half_of_six_actors
    r = CliRunner().invoke(app, ["reproduce", "seed001", "--data", str(data), "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    row = res["rows"][0]
    assert row["paper"] == pytest.approx(0.939)
    assert row["paper_protocol"]["speaker_independent"] is False
    assert row["speaker_independent"]["speaker_independent"] is True
    table = (out / "table.md").read_text()
    assert "93.9" in table and "Quick smoke run" in table
    leaky = res["rows"][1]
    assert "LEAKY" in leaky["label"] and "speaker_independent" not in leaky
    assert "LEAKY" in table and "min" in table.splitlines()[8]  # each row's wall time
    svm = next(r for r in res["rows"] if r["model"] == "compare_svm")  # the reference, on the network's test folds
    assert same_folds(row, res["rows"])["wa"]["folds"] == svm["speaker_independent"]["wa"]["folds"][:1]
    assert row["paper_protocol"]["seconds"] > 0 and row["paper_protocol"]["flags"] == [row["paper_protocol"]["flags"][0]]
    assert f"seed001: {row['label']} [paper_protocol] fold 1/1: UA" in r.output  # each fold's line as it finishes
    # the same --out again: refused without --resume; with it, every fold is kept and nothing retrains
    again = CliRunner().invoke(app, ["reproduce", "seed001", "--data", str(data), "--quick", "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = CliRunner().invoke(app, ["reproduce", "seed001", "--data", str(data), "--quick", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    res2 = json.loads((out / "results.json").read_text())
    assert res2["rows"][0]["paper_protocol"]["wa"] == row["paper_protocol"]["wa"]
    assert res2["rows"][0]["paper_protocol"]["seconds"] >= row["paper_protocol"]["seconds"]  # the earlier sitting counted
    assert "fold 1/1" not in resumed.output  # kept folds print no line
    bad = CliRunner().invoke(app, ["reproduce", "seed999", "--data", str(DATA)])
    assert bad.exit_code == 2 and "unknown recipe" in bad.output


def test_a_long_run_prints_each_fold_and_the_time_left(capsys):
    on_fold = fold_printer("seed004")
    fold = {"ua": 0.5, "wa": 0.55, "macro_f1": 0.45, "epochs_run": 40}
    on_fold("CNN [paper_protocol]", 0, 4, {**fold, "seconds": 600.0, "resumed": True})  # kept from a sitting before
    assert capsys.readouterr().err == ""
    on_fold("CNN [paper_protocol]", 1, 4, {**fold, "seconds": 1200.0})
    line = capsys.readouterr().err
    assert "seed004: CNN [paper_protocol] fold 2/4: UA 50.0, WA 55.0, macro-F1 45.0, 40 epochs, 20 min" in line
    assert "2 folds left, about 30 min" in line  # at the mean pace of both finished folds
    on_fold("LSTM [paper_protocol]", 0, 2, {**fold, "seconds": 5400.0})  # another run keeps its own pace
    assert "1 fold left, about 90 min" in capsys.readouterr().err
    on_fold("SVM [paper_protocol]", 0, 50, dict(fold))  # an SVM fold: no seconds, no line
    assert capsys.readouterr().err == ""


def test_leaky_copies_are_made_before_the_split_and_only_on_request():
    """The leaky option makes noisy copies of every clip before a random split, so some test clips
    have a copy in training; it is refused with speaker folds and used by one recipe row only."""
    import numpy as np

    from voxemo.corpora import scan
    from voxemo.experiment import leaky_copies_before_split
    from voxemo.runs import plan_folds

    utts = [u for u in scan(DATA / "ravdess_speech") if u.speaker in {"ravdess:01", "ravdess:02"}]
    e = Experiment(model="td_cnn_lstm", protocol="random", leaky_noisy_copies=1)
    assert e.train_config().augment.noise_snr is None  # no further noise in training
    plan = plan_folds(utts, e)
    clips = [np.full(16000, 0.1, dtype=np.float32) for _ in plan.utts]
    leaky, out = leaky_copies_before_split(plan, clips, e)
    n = len(plan.utts)
    assert len(leaky.utts) == len(out) == 2 * n and not np.array_equal(out[n], clips[0])
    fold = leaky.folds[0]
    test_originals = {i % n for i in fold.test}
    assert test_originals & {i % n for i in fold.train}  # copies of test clips train the model
    with pytest.raises(ValueError, match="speaker-dependent split"):
        Experiment(model="td_cnn_lstm", protocol="speaker-kfold", leaky_noisy_copies=1)
    users = [(name, row["label"]) for name in list_recipes() for row in load_recipe(name)["row"]
             if row.get("common", {}).get("leaky_noisy_copies")]
    assert users == [("seed001", "speech, 8 emotions, LEAKY: noisy copies made before the split")]


def test_leaky_oversampling_balances_the_corpus_before_the_split_and_only_on_request():
    """seed004's leaky reading: duplicates drawn from each smaller class until every class has as many
    clips as the largest, BEFORE the repeated k-fold, so a test clip's duplicate may train the model."""
    import numpy as np

    from voxemo.corpora import scan
    from voxemo.experiment import leaky_copies_before_split
    from voxemo.runs import plan_folds

    utts = scan(DATA / "emodb")
    e = Experiment(model="cnn_stft", protocol="repeated-kfold", leaky_oversample=True)
    assert not e.train_config().oversample  # already balanced: no class-balanced epochs on top
    assert Experiment(model="cnn_stft", protocol="repeated-kfold").train_config().oversample  # the paper's, otherwise
    plan = plan_folds(utts, e)
    clips = [np.full(160, i, dtype=np.float32) for i in range(len(plan.utts))]  # clip i holds the value i
    leaky, out = leaky_copies_before_split(plan, clips, e)
    counts = np.bincount(plan.y)
    assert counts.min() < counts.max() and (np.bincount(leaky.y) == counts.max()).all()
    n = len(plan.utts)
    original = np.array([int(c[0]) for c in out])  # which clip each entry duplicates
    assert (original[:n] == np.arange(n)).all() and (leaky.y == plan.y[original]).all()
    assert [leaky.utts[i] for i in range(len(out))] == [plan.utts[i] for i in original]
    assert len(leaky.folds) == len(plan.folds) == 50
    fold = leaky.folds[0]
    assert set(original[fold.test]) & set(original[fold.train])  # duplicates of test clips train the model
    again, _ = leaky_copies_before_split(plan, clips, e)
    assert (again.y == leaky.y).all() and (again.folds[0].test == fold.test).all()  # seeded
    for bad in (dict(protocol="loso"), dict(protocol="speaker-kfold"), dict(model="compare_svm")):
        with pytest.raises(ValueError, match="speaker-dependent split"):
            Experiment(**{"model": "cnn_stft", "protocol": "repeated-kfold", "leaky_oversample": True, **bad})
    users = [(name, row["label"]) for name in list_recipes() for row in load_recipe(name)["row"]
             if row.get("common", {}).get("leaky_oversample")]
    assert users == [("seed004", f"{net} on STFT patches, LEAKY: oversampled before the split")
                     for net in ("CNN", "LSTM", "TD-CNN + LSTM")]  # each network of the paper, beside its honest row


def test_budgets_cap_the_networks_and_leave_the_baselines_whole():
    r = load_recipe("seed004")
    by_model = {}
    for row in r["row"]:  # each model's first row (the leaky CNN row comes after the CNN's)
        by_model.setdefault(row["common"]["model"], row_experiments(r, row))
    cnn = by_model["cnn_stft"]
    assert cnn["paper_protocol"]["train"]["epochs"] == r["budget"]["epochs"]
    assert cnn["speaker_independent"]["max_folds"] == r["budget"]["max_folds"]
    td = by_model["td_cnn_stft"]  # a row's own budget wins over the recipe's
    assert td["paper_protocol"]["train"]["epochs"] == 3 and td["speaker_independent"]["max_folds"] == 1
    svm = by_model["compare_svm"]
    assert "max_folds" not in svm["speaker_independent"] and "train" not in svm["paper_protocol"]
    quick = row_experiments(r, r["row"][0], quick=True)["speaker_independent"]
    assert quick["train"]["epochs"] == 1 and quick["max_folds"] == 1


def test_budget_patience_and_full_run():
    recipe = {"budget": {"epochs": 5, "patience": 2, "max_folds": 1},
              "row": [{"label": "x", "data": ["emodb"], "common": {"model": "cnn_stft"}}]}
    row = recipe["row"][0]
    budgeted = row_experiments(recipe, row)
    assert budgeted["paper_protocol"]["train"] == {"epochs": 5, "patience": 2}
    assert budgeted["speaker_independent"]["max_folds"] == 1
    full = row_experiments(recipe, row, full=True)  # the model's own epochs and patience, every fold
    assert "train" not in full["paper_protocol"] and "max_folds" not in full["speaker_independent"]


def test_quick_and_full_together_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "seed000", "--data", str(tmp_path), "--quick", "--full"])
    assert res.exit_code == 2 and "contradict" in res.output


def test_a_paper_reporting_validation_accuracy_is_set_beside_ours_on_validation():
    """seed000's paper reports validation accuracy: its table gives ours on the validation clips at the
    epoch each fold kept (best_epoch indexes the fold's curves) beside ours on the test clips."""
    from voxemo.recipes import table_markdown
    from voxemo.runs import validation_at_best

    folds = [{"best_epoch": 1}, {"best_epoch": 0}]
    curves = [{"val_acc": [0.5, 0.8, 0.7], "val_ua": [0.4, 0.75, 0.7]}, {"val_acc": [0.6], "val_ua": [0.5]}]
    kept = validation_at_best(folds, curves)
    assert kept["wa"]["folds"] == [0.8, 0.6] and kept["ua"]["mean"] == pytest.approx(0.625)
    assert validation_at_best(folds, [curves[0], {"val_acc": [], "val_ua": []}]) is None  # no validation: nothing
    assert validation_at_best([{"best_epoch": None}], [{}]) is None  # an SVM baseline's fold
    assert load_recipe("seed000")["paper_reports"] == "validation"
    ours = {k: {"mean": 0.69, "std": 0.0, "folds": [0.69]} for k in ("wa", "ua", "macro_f1")}
    results = {"recipe": "seed000", "title": "t", "paper_protocol": "p", "paper_reports": "validation",
               "quick": False, "full": True, "seconds": 60.0, "sitting_seconds": 60.0,
               "rows": [{"label": "song", "metric": "wa", "paper": 0.733,
                         "paper_protocol": ours | {"validation_at_best": kept, "folds_run": 1}}]}
    assert "| 69.0 ± 0.0 (1 fold); validation 70.0 |" in table_markdown(results)
    assert "| 69.0 ± 0.0 (1 fold) |" in table_markdown(results | {"paper_reports": "test"})


def test_each_network_row_is_set_beside_the_svm_on_the_same_test_folds():
    """The mission table's last figure: ComParE + SVM on the folds the network ran (same fold names and
    test clips), over just those folds; a row whose folds no reference ran gets none."""
    from voxemo.recipes import table_markdown

    def run(folds, values):
        return {k: {"mean": sum(values) / len(values), "std": 0.0, "folds": values} for k in ("wa", "ua", "macro_f1")} | {
            "fold_keys": [[f, 120] for f in folds], "folds_run": len(folds)}

    net = {"label": "male CNN", "metric": "wa", "paper": 0.53, "model": "cnn1d_baseline",
           "speaker_independent": run(["fold 1/6: test ravdess:01,ravdess:19"], [0.33])}
    other = {"label": "female CNN", "metric": "wa", "paper": 0.54, "model": "cnn1d_baseline",
             "speaker_independent": run(["fold 1/6: test ravdess:02,ravdess:20"], [0.5])}
    svm = {"label": "reference: male, ComParE + SVM", "metric": "wa", "paper": None, "model": "compare_svm",
           "speaker_independent": run(["fold 1/6: test ravdess:01,ravdess:19", "fold 2/6: test ravdess:05,ravdess:07"],
                                      [0.40, 0.60])}
    rows = [net, other, svm]
    assert same_folds(net, rows)["wa"]["folds"] == [0.40]  # fold 1 only, as the network ran
    assert same_folds(other, rows) is None and same_folds(svm, rows) is None
    emotions, voices = ["neutral", "happy"], ["female", "male"]  # same folds, other task: not its reference
    svm_gender = {**svm, "label": "reference: gender",
                  "speaker_independent": {**run(["fold 1/6: test ravdess:01,ravdess:19"], [0.95]), "classes": voices}}
    gender_net = {**net, "label": "gender CNN", "speaker_independent": {**net["speaker_independent"], "classes": voices}}
    svm_emotion = {**svm, "speaker_independent": {**svm["speaker_independent"], "classes": emotions}}
    assert same_folds(gender_net, [svm_emotion, svm_gender])["wa"]["folds"] == [0.95]
    table = table_markdown({"recipe": "seed003", "title": "t", "paper_protocol": "p", "quick": False, "full": True,
                            "seconds": 60.0, "sitting_seconds": 60.0, "rows": rows}).splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("| experiment"))
    assert "| ours, speaker-independent | ComParE + SVM, same speaker-independent folds |" in table[header]
    assert "| 33.0 ± 0.0 (1 fold) | 40.0 ± 0.0 (1 fold) |" in table[header + 2]
    assert "| 50.0 ± 0.0 (1 fold) | - |" in table[header + 3]


@pytest.fixture
def fake_runs(monkeypatch):
    """`reproduce` with every network run replaced by one fold of 40 epochs at 0.5: the run folders it
    asked for, in order."""
    import voxemo.experiment

    ran = []

    def fake_cv(manifest, exp, run_dir, **kw):
        ran.append(run_dir.name)
        fold = {"fold": "fold 1/1", "n_test": 10, "epochs_run": 40}
        return {k: {"mean": 0.5, "std": 0.0, "folds": [0.5]} for k in ("ua", "wa", "macro_f1")} | {
            "protocol": exp.protocol, "speaker_independent": exp.protocol != "random", "classes": ["a", "b"],
            "folds": [fold], "seconds": 1.0}

    monkeypatch.setattr(voxemo.experiment, "cross_validate", fake_cv)
    monkeypatch.setattr(voxemo.experiment, "load_corpora", lambda paths: [])
    return ran


def test_rows_run_a_part_of_a_recipe_and_write_their_own_table(tmp_path, fake_runs):
    """--rows 2-3 runs only those rows (another process may run the rest into the same folder): its table
    is table-rows-2-3.md, and table.md, the whole recipe's, is not written."""
    from voxemo.recipes import parse_rows

    assert parse_rows("7-9,2", 10) == [2, 7, 8, 9]
    for bad in ("0", "11", "x", "3-"):
        with pytest.raises(ValueError, match="rows"):
            parse_rows(bad, 10)
    r = CliRunner().invoke(app, ["reproduce", "seed001", "--data", str(DATA), "--rows", "2-3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert fake_runs == ["row02-paper_protocol", "row03-paper_protocol", "row03-speaker_independent"]
    assert (tmp_path / "table-rows-2-3.md").is_file() and not (tmp_path / "table.md").exists()
    assert "LEAKY" in (tmp_path / "table-rows-2-3.md").read_text()
    bad = CliRunner().invoke(app, ["reproduce", "seed001", "--data", str(DATA), "--rows", "4", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--rows" in bad.output


def test_the_table_says_what_each_rows_early_stopping_watched(tmp_path, fake_runs):
    """seed004's CNN stops on the validation UA, its LSTM on the validation loss: a --full table says which."""
    r = CliRunner().invoke(app, ["reproduce", "seed004", "--data", str(DATA), "--full", "--rows", "1-2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    cnn, lstm = [line for line in (tmp_path / "table-rows-1-2.md").read_text().splitlines() if "on STFT patches" in line]
    assert "40-40 of 60 epochs, patience 15 (1 stopped early)" in cnn
    assert "40-40 of 300 epochs, patience 15 on validation loss (1 stopped early)" in lstm

@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs").glob("seed00*.toml")), ids=lambda p: p.stem)
def test_each_experiment_config_is_its_recipe_row_but_for_its_training_settings(config):
    """RESULTS reads each config's `voxemo cv` runs against a recipe row's --full run: the command in the
    config's header must build that row's paper-protocol experiment, changed in its [train] only (or
    not at all: seed002_mfcc_time_mean.toml is rows 13-14, run before they were rows)."""
    recipe = load_recipe(config.name[:7])
    rows = [Experiment(**row_experiments(recipe, row, full=True)["paper_protocol"]) for row in recipe["row"]]
    commands = [line for line in config.read_text().splitlines() if line.startswith("# OMP_NUM_THREADS=1 voxemo cv")]
    assert commands, f"{config.name} shows no command"
    for command in commands:
        assert f"--config configs/{config.name}" in command
        exp = Experiment.from_config(config, **dict(re.findall(r"--(model|gender|task) (\S+)", command)))
        twins = [r for r in rows if dataclasses.replace(r, train=exp.train) == exp]
        assert len(twins) == 1, f"{command}: {len(twins)} recipe rows"


def test_an_unfinished_row_is_set_beside_its_reference_on_the_same_test_folds_only(tmp_path):
    """scripts/ledger_progress.py: a row still running is quoted over its finished folds, and a reference
    only over the same test folds; a LEAKY row's folds share their names, not their test clips."""
    import subprocess
    import sys

    def fold(name, n_test, f1):
        return {"fold": name, "n_test": n_test, "macro_f1": f1, "ua": f1, "wa": f1, "classes": ["a", "b"],
                "confusion": [[1, 0], [0, 1]]}

    names = ["repeat 1/5 fold 1/10", "repeat 1/5 fold 2/10", "repeat 1/5 fold 3/10"]
    svm = tmp_path / "row04"
    svm.mkdir()
    (svm / "metrics.json").write_text(json.dumps({"folds": [fold(n, 54, v) for n, v in zip(names, (0.8, 0.9, 0.5))]}))
    for row, n_test, values in (("row02", 54, (0.5, 0.7)), ("row05", 89, (0.85, 0.95))):
        for i, v in enumerate(values):
            (tmp_path / row / f"fold{i + 1:02d}").mkdir(parents=True)
            (tmp_path / row / f"fold{i + 1:02d}" / "metrics.json").write_text(
                json.dumps({"metrics": fold(names[i], n_test, v), "seconds": 60.0,
                            "history": {"train_loss": [1.9, 1.2, 1.4], "train_acc": [0.2, 0.6, 0.5],
                                        "val_ua": [0.3, 0.6, 0.5], "val_loss": [1.8, 1.5, 1.4]}}))

    def run(row, *flags):
        script = Path(__file__).parents[1] / "scripts" / "ledger_progress.py"
        return subprocess.run([sys.executable, str(script), str(tmp_path / row), "--reference", str(svm), *flags],
                              capture_output=True, text=True, check=True).stdout

    honest = run("row02")
    assert "2 folds finished, macro_f1 60.0 ± 10.0, 2.0 min" in honest
    assert "reference on the same 2 folds: macro_f1 85.0 ± 5.0" in honest  # folds 1 and 2, not fold 3
    assert "did not run these test folds" in run("row05")
    # the row as RESULTS.md quoted it at one fold, after it ran on
    first = run("row02", "--folds", "1", "--training")
    assert "1 folds finished, macro_f1 50.0 ± 0.0, 1.0 min" in first and "reference on the same 1 folds: macro_f1 80.0" in first
    assert "fold 2:" not in first
    every = run("row02", "--training")
    assert ("fold 2: 3 epochs, best validation epoch 2 (val_ua), lowest validation loss 1.40 at epoch 3, lowest "
            "training loss 1.20, highest training accuracy 0.60" in every)
    assert "over the 2 folds: epochs run median 3 (3 to 3), epoch kept median 2 (2 to 2)" in every
    # a run whose early stopping watched the validation loss kept the epoch of the lowest
    (tmp_path / "row02" / "config.json").write_text(json.dumps({"train_resolved": {"monitor": "val_loss"}}))
    by_loss = run("row02", "--training")
    assert "fold 2: 3 epochs, best validation epoch 3 (val_loss), lowest validation loss 1.40" in by_loss
    assert "epoch kept median 3 (3 to 3)" in by_loss
