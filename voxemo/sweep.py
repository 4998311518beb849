"""Hyper-parameter sweeps without leaks: a Ray Tune search inside each outer fold (nested).

For each outer fold of the experiment's protocol, `trials` settings are drawn from a search space
(`load_space`: a TOML file) and each trial trains on the fold's training speakers, reporting its
validation speakers' UA after every epoch; ASHA stops the weaker trials early. The fold's test
speakers are never seen by a trial. The chosen settings (the best validation UA of any trial at any
epoch) are then trained once more on the fold, early stopping on the same validation speakers, and
scored on its test speakers (`experiment.run_fold`, through the executor): those outer test figures
are the sweep's result, in a run directory like `voxemo cv`'s plus `sweep.json` (every trial's
settings and validation score, and the chosen settings per fold).

A space file has the tables [train], [model_overrides] and [frontend] (the experiment's own); each
key is a fixed value or one distribution: `lr = {loguniform = [1e-4, 1e-2]}`, `{uniform = [a, b]}`,
`{randint = [a, b]}` (b excluded), `{choice = [v1, v2, ...]}`.

Ray Tune keeps its own bookkeeping in a temporary folder, removed at the end; only this process
writes the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import ConfigError

SPACE_TABLES = ("train", "model_overrides", "frontend")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
METRIC = "val_ua"  # what trials are scored and chosen on: the validation speakers' UA
BEST = "best_val_ua"  # a trial's best METRIC so far (ASHA's rungs and the choice compare this)


def load_space(path: str | Path, exp=None) -> dict:
    """A search space from TOML: {table: {key: value or {distribution: args}}}; ConfigError names
    an unknown table, distribution or (with `exp`) training or front-end key."""
    try:
        space = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    for table, keys in space.items():
        if table not in SPACE_TABLES or not isinstance(keys, dict):
            raise ConfigError(f"{path}: [{table}] is not a sweep table; use {', '.join(f'[{t}]' for t in SPACE_TABLES)}")
        for key, v in keys.items():
            if isinstance(v, dict) and (len(v) != 1 or next(iter(v)) not in DISTRIBUTIONS):
                raise ConfigError(f"{path}: {table}.{key} = {v}: give one of {', '.join(DISTRIBUTIONS)}, "
                                  "e.g. {loguniform = [1e-4, 1e-2]}")
    if exp is not None:  # every key exists: one sample (each distribution's first value) builds valid configs
        probe = apply_settings(exp, {t: {k: _first(v) for k, v in keys.items()} for t, keys in space.items()})
        probe.train_config(), probe.frontend_config()
    return space


def _first(v):
    if not isinstance(v, dict):
        return v
    (name, args), = v.items()
    return args[0]


def to_tune(space: dict) -> dict:
    """The space as Ray Tune's param_space."""
    from ray import tune

    def one(v):
        if not isinstance(v, dict):
            return v
        (name, args), = v.items()
        return tune.choice(list(args)) if name == "choice" else getattr(tune, name)(*args)

    return {t: {k: one(v) for k, v in keys.items()} for t, keys in space.items()}


def apply_settings(exp, settings: dict):
    """The experiment with a trial's settings over its own [train], [model_overrides], [frontend]."""
    return dataclasses.replace(exp, **{t: {**getattr(exp, t), **settings.get(t, {})} for t in SPACE_TABLES})


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _trial(settings: dict, inputs=None, fold=None) -> None:
    """One trial: train on the outer fold's training speakers, report validation UA each epoch."""
    from ray import tune

    from .experiment import build, uses_encoder
    from .train import fit

    exp = apply_settings(inputs.exp, settings)
    pipe = build(exp, inputs.classes)
    tr, va = torch.as_tensor(fold.train), torch.as_tensor(fold.val)
    best = [0.0]

    def report(r):
        best[0] = max(best[0], r["val_ua"])
        tune.report({BEST: best[0], METRIC: r["val_ua"], "val_loss": r["val_loss"], "epoch": r["epoch"] + 1})

    fit(pipe, (inputs.waves[tr], inputs.labels[tr]), (inputs.waves[va], inputs.labels[va]), exp.train_config(),
        precomputed=uses_encoder(exp), on_epoch=report)


def sweep_fold(inputs, fold, space: dict, *, trials: int, cpus: int, seed: int, grace_period: int, storage: str,
               name: str) -> tuple[dict, list[dict]]:
    """Ray Tune over one outer fold: (chosen settings, every trial's {"settings", "val_ua", "epochs"})."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables on the terminal
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard / CSV / JSON files per trial
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    epochs = inputs.exp.train_config().epochs
    trainable = tune.with_resources(tune.with_parameters(_trial, inputs=inputs, fold=fold), {"cpu": cpus})
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune(space),
        tune_config=tune.TuneConfig(
            metric=BEST, mode="max", num_samples=trials,
            scheduler=ASHAScheduler(max_t=epochs, grace_period=min(grace_period, epochs)),
            search_alg=BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    grid = tuner.fit()
    if grid.errors:
        raise ValueError(f"{len(grid.errors)} of {trials} trials failed, e.g.: {str(grid.errors[0]).strip().splitlines()[-1]}")
    table = [{"settings": json.loads(json.dumps(r.config, default=_plain)), METRIC: float(r.metrics[BEST]),
              "epochs": int(r.metrics["epoch"])} for r in grid]  # epochs below the cap: stopped by ASHA
    best = grid.get_best_result(metric=BEST, mode="max", scope="last")
    return json.loads(json.dumps(best.config, default=_plain)), table


def nested_sweep(manifest: Sequence, exp, space: dict, run_dir: Path, *, trials: int = 8, executor=None,
                 grace_period: int = 1, resume: bool = False, on_fold: Callable[[int, int, dict], None] | None = None,
                 decode_progress: Callable[[int], None] | None = None) -> dict:
    """Sweep `space` inside each outer fold of `exp`, retrain the chosen settings per fold and score
    its test speakers; write the run directory (metrics.json, report, sweep.json); return metrics.json's
    dict with "sweep" (per fold: the chosen settings and the trials).

    executor: an `executors` executor; Ray Tune runs on the Ray instance it is connected to (a local
    executor: an embedded instance on this machine), the retrains run through it.
    """
    from .executors import LocalExecutor, ray_init
    from .experiment import FoldInputs, copy_inputs, load_clips, model_inputs, run_fold
    from .runs import finish_run, plan_folds

    if exp.is_baseline or exp.per_gender:
        raise ValueError("a sweep tunes one network per fold: not the SVM baselines, not --per-gender")
    executor = executor or LocalExecutor()
    cpus = getattr(executor, "cpus", 1)
    ray_init()  # the executor's instance, or an embedded one for the local executor
    plan = plan_folds(manifest, exp)
    if any(len(f.val) == 0 for f in plan.folds):
        raise ValueError("a sweep scores trials on validation speakers; this protocol's folds hold none out")
    clips = load_clips(plan.utts, exp.audio, decode_progress)
    inputs = FoldInputs(exp, clips, model_inputs(exp, plan.utts, clips), torch.as_tensor(plan.y, dtype=torch.long),
                        plan.classes, np.array([u.gender for u in plan.utts]), np.array([u.speaker for u in plan.utts]),
                        copy_inputs(exp, plan.utts))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**exp.to_dict(), "sweep": {"space": space, "trials": trials, "scheduler": "ASHA",
                                         "grace_period": grace_period, "metric": METRIC}}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    n = len(plan.folds)
    results: list[dict | None] = [None] * n
    fold_dirs = [run_dir / f"fold{i + 1:02d}" for i in range(n)]
    t0, earlier = time.perf_counter(), 0.0
    storage = tempfile.mkdtemp(prefix="voxemo-tune-")
    try:
        todo = []
        for i in range(n):
            if resume and (fold_dirs[i] / "metrics.json").is_file():
                results[i] = json.loads((fold_dirs[i] / "metrics.json").read_text())
                earlier += results[i].get("seconds", 0.0)
                if on_fold:
                    on_fold(i, n, results[i]["metrics"])
            else:
                todo.append(i)
        searched = {}
        for i in todo:
            chosen, table = sweep_fold(inputs, plan.folds[i], space, trials=trials, cpus=cpus, seed=exp.seed + i,
                                       grace_period=grace_period, storage=storage, name=f"fold{i + 1:02d}")
            searched[i] = (chosen, table)
        jobs = [{"fold": plan.folds[i], "exp": apply_settings(exp, searched[i][0])} for i in todo]
        for k, r in executor.map(run_fold, inputs, jobs):
            i = todo[k]
            fold_dirs[i].mkdir(parents=True, exist_ok=True)
            from safetensors.numpy import save_file  # the retrain keeps no checkpoint: its weights are written here

            save_file(r["weights"], str(fold_dirs[i] / "weights.safetensors"))
            chosen, table = searched[i]
            results[i] = {"metrics": {**r["metrics"], "chosen": chosen}, "history": r["history"],
                          "seconds": r["seconds"], "trials": table}
            (fold_dirs[i] / "metrics.json").write_text(json.dumps(results[i]))
            if on_fold:
                on_fold(i, n, results[i]["metrics"])
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    metrics = finish_run(run_dir, exp, config, plan, [r["metrics"] for r in results], [r["history"] for r in results],
                         t0 - earlier)
    sweep = [{"fold": plan.folds[i].name, "chosen": results[i]["metrics"]["chosen"], "test_ua": results[i]["metrics"]["ua"],
              "test_wa": results[i]["metrics"]["wa"], "trials": results[i]["trials"]} for i in range(n)]
    (run_dir / "sweep.json").write_text(json.dumps(sweep, indent=2))
    return {**metrics, "sweep": sweep}
