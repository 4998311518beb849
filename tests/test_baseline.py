"""The openSMILE + SVM baseline runs under the same folds and writes the same metrics as a network."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from voxemo.baseline import C_GRID, SmileCache, fit_svm, smile_features
from voxemo.cli import app
from voxemo.corpora import scan
from voxemo.experiment import Experiment, cross_validate

from .conftest import DATA, link_actors

ACTORS = {f"ravdess:{a:02d}" for a in range(1, 7)}  # 3 female, 3 male


@pytest.fixture(scope="module")
def six_actors():
    return [u for u in scan(DATA / "ravdess_speech") if u.speaker in ACTORS]


def test_cv_writes_speaker_independent_metrics_above_chance(six_actors, tmp_path):
    exp = Experiment(model="egemaps_svm", folds=3)
    m = cross_validate(six_actors, exp, tmp_path / "run")
    assert m["protocol"] == "speaker-kfold" and m["speaker_independent"] is True
    assert len(m["classes"]) == 8 and len(m["ua"]["folds"]) == 3
    assert m["ua"]["mean"] > 0.25  # chance is 0.125 for 8 balanced-ish classes
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["ua"] == m["ua"] and (tmp_path / "run" / "report.md").is_file()
    for f in m["folds"]:  # C was chosen from the grid on the validation speakers
        assert f["svm_c"] in C_GRID and f["n_val"] > 0


def test_functionals_are_cached_per_file(six_actors):
    utts = six_actors[:3]
    first = smile_features(utts, "egemaps")
    cache = SmileCache("egemaps")
    again = np.stack(cache.load_many([u.path for u in utts], workers=1))
    assert first.shape == (3, 88) and cache.hits == 3 and cache.misses == 0
    np.testing.assert_array_equal(first, again)


def test_c_is_chosen_on_validation_and_generalises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    model, c = fit_svm(x[:240], y[:240], x[240:320], y[240:320], 2)
    assert c in C_GRID and c >= 1e-3  # the tiny C's collapse to one class on validation and lose
    assert (model.predict(x[320:]) == y[320:]).mean() > 0.9


def test_cli_runs_the_baseline_and_refuses_to_train_it(tmp_path):
    root = link_actors(tmp_path / "ravdess6")  # the six actors again: their functionals are in the run's cache
    runner = CliRunner()
    r = runner.invoke(app, ["cv", str(root), "--model", "egemaps_svm", "--protocol", "loso",
                            "--max-folds", "1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"] == "loso"
    r = runner.invoke(app, ["train", str(DATA / "emodb"), "--model", "compare_svm", "--out", str(tmp_path / "p")])
    assert r.exit_code != 0 and "voxemo cv" in r.output
