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


@pytest.fixture(scope="module")
def six_actors(tmp_path_factory):
    """RAVDESS speech actors 1-6 (3 F, 3 M), linked into a folder of their own."""
    root = tmp_path_factory.mktemp("ravdess6")
    for a in range(1, 7):
        (root / f"Actor_{a:02d}").symlink_to(DATA / "ravdess_speech" / f"Actor_{a:02d}")
    return root


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
