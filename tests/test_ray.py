"""Issue 15: the Ray executor on a local 2-CPU instance (dashboard and usage statistics off, its
temporary folder under pytest's and removed): folds as tasks give the local executor's metrics,
a 2-trial nested sweep, and corpus-scale prediction and features that stream, write as they go and
skip what is done on a rerun. One Ray instance serves the whole module."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from voxemo.cli import app

from .conftest import DATA
from .test_experiment import six_actors  # noqa: F401  (a fixture: RAVDESS speech actors 1-6)

ray = pytest.importorskip("ray", reason="the Ray tests need voxemo[ray] (part of voxemo[test])")

runner = CliRunner()
SMALL = ["--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "2", "--epochs", "1", "--batch-size", "16",
         "--emotions", "neutral,angry"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance with 2 CPUs for this module; shut down and its folder removed after."""
    from voxemo.executors import ray_init, ray_shutdown

    tmp = tmp_path_factory.mktemp("r")  # short: Ray's socket paths must stay under 108 characters
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    mp.delenv("RAY_ADDRESS", raising=False)
    ray_init(num_cpus=2, temp_dir=str(tmp))
    yield
    ray_shutdown()
    mp.undo()
    shutil.rmtree(tmp, ignore_errors=True)


def test_an_address_that_does_not_answer_is_one_clear_error(monkeypatch, tmp_path):
    """Issue 15.4: no traceback, the address named, and what to do."""
    from voxemo import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 2)
    assert not ray.is_initialized()  # these tests come before the module's instance starts
    r = run("cv", DATA / "emodb", *SMALL, "--out", tmp_path / "x", "--executor", "ray",
            "--ray-address", "127.0.0.1:1")
    assert r.exit_code == 2
    assert "cannot connect to the Ray cluster at 127.0.0.1:1" in r.output and "ray start --head" in r.output


def test_missing_ray_is_one_clear_error(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'", name="ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    r = run("cv", DATA / "emodb", *SMALL, "--out", tmp_path / "x", "--executor", "ray")
    assert r.exit_code == 2 and "pip install 'voxemo[ray]'" in r.output


def test_two_folds_on_ray_give_the_local_metrics(local_ray, six_actors, tmp_path):
    """Issue 15.1: the same seeds give the same figures on either executor; the driver writes the
    run directory (a remote fold returns its weights), and --resume reuses finished folds."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    r = run("cv", six_actors, *SMALL, "--out", local)
    assert r.exit_code == 0, r.output
    r = run("cv", six_actors, *SMALL, "--out", remote, "--executor", "ray")
    assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (local, remote))
    assert len(a["folds"]) == len(b["folds"]) == 2
    for k in ("ua", "wa", "macro_f1"):
        assert b[k]["folds"] == pytest.approx(a[k]["folds"], abs=1e-9)
    assert [f["confusion"] for f in b["folds"]] == [f["confusion"] for f in a["folds"]]
    for i in (1, 2):  # the fold's pipeline reached the driver; no checkpoint was written by a worker
        assert (remote / f"fold0{i}" / "weights.safetensors").is_file()
        assert not (remote / f"fold0{i}" / "last.safetensors").exists()
    (remote / "fold02" / "metrics.json").unlink()  # an interrupted run: fold 2 unfinished
    (remote / "metrics.json").unlink()
    r = run("cv", six_actors, *SMALL, "--out", remote, "--executor", "ray", "--resume")
    assert r.exit_code == 0, r.output
    c = json.loads((remote / "metrics.json").read_text())
    assert c["ua"]["folds"] == pytest.approx(b["ua"]["folds"], abs=1e-9)


def test_a_two_trial_nested_sweep_scores_trials_on_validation_speakers(local_ray, six_actors, tmp_path):
    """Issue 15.2: Ray Tune (ASHA) inside the outer fold; the chosen settings and the outer test figures."""
    space = tmp_path / "space.toml"
    space.write_text("[train]\nlr = {loguniform = [1e-4, 3e-3]}\n")
    out = tmp_path / "sweep"
    r = run("tune", six_actors, "--space", space, "--trials", "2", "--executor", "ray", "--out", out,
            "--model", "cnn1d_baseline", "--folds", "3", "--max-folds", "1", "--epochs", "2", "--emotions", "neutral,angry")
    assert r.exit_code == 0, r.output
    sweep = json.loads((out / "sweep.json").read_text())
    assert len(sweep) == 1 and len(sweep[0]["trials"]) == 2
    lrs = [t["settings"]["train"]["lr"] for t in sweep[0]["trials"]]
    assert all(1e-4 <= lr <= 3e-3 for lr in lrs) and sweep[0]["chosen"]["train"]["lr"] in lrs
    best = max(sweep[0]["trials"], key=lambda t: t["val_ua"])
    assert best["val_ua"] == max(t["val_ua"] for t in sweep[0]["trials"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["folds"][0]["ua"] == sweep[0]["test_ua"] and m["speaker_independent"] is True
    test_speakers = sweep[0]["fold"].split("test ")[1].split(",")
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"]["scheduler"] == "ASHA" and config["sweep"]["metric"] == "val_ua"
    assert (out / "fold01" / "weights.safetensors").is_file()
    assert test_speakers and "chosen" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = {gaussian = [0, 1]}\n")
    r = run("tune", six_actors, "--space", bad, "--model", "cnn1d_baseline", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "loguniform" in r.output


def test_predict_and_features_stream_through_ray_and_resume(local_ray, tmp_path):
    """Issue 15.3: a file list through a pool of Ray Data workers, written as it comes; a rerun
    skips what is done, including after a kill that cut the last line short."""
    clips = sorted((DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[:12]
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(map(str, clips + [tmp_path / "missing.wav"])) + "\n")
    out = tmp_path / "pred.jsonl"
    r = run("predict", listing, "--model", "voxemo_net", "--executor", "ray", "--out", out)
    assert r.exit_code == 1, r.output  # the missing file is reported, the others predicted
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 13 and {r_["path"] for r_ in rows} == {str(p) for p in clips} | {str(tmp_path / "missing.wav")}
    local = tmp_path / "local.jsonl"
    assert run("predict", *clips, "--model", "voxemo_net", "--out", local).exit_code == 0
    by_path = {r_["path"]: r_ for r_ in rows}
    for line in local.read_text().splitlines():  # the same probabilities on either executor
        one = json.loads(line)
        assert by_path[one["path"]]["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:10]) + text[10][:20])  # a kill: 10 lines and a torn one
    r = run("predict", listing, "--model", "voxemo_net", "--executor", "ray", "--out", out)
    assert "3 files predicted" in r.output and "10 were there already" in r.output, r.output
    assert len({json.loads(line)["path"] for line in out.read_text().splitlines()}) == 13

    feats = tmp_path / "feats.parquet"
    r = run("features", listing, "--kind", "logmel", "--n-mels", "32", "--offset", "0", "--executor", "ray", "--out", feats)
    assert r.exit_code == 0 and "13 files" in r.output and "1 could not be used" in r.output, r.output
    from voxemo.bulk import read_features

    paths, x, meta = read_features(feats)
    assert len(paths) == 12 and x.shape[:2] == (12, 32) and meta["kind"] == "logmel"
    r = run("features", listing, "--kind", "logmel", "--n-mels", "32", "--offset", "0", "--executor", "ray", "--out", feats)
    assert "0 files" in r.output and "13 were there already" in r.output, r.output
