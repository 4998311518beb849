"""A cross-validation run, network or SVM baseline alike: its folds planned in one place, its run
directory finished in one place.

`plan_folds` turns a manifest and an experiment into the utterances, labels, classes and folds to
run (the experiment's filters, its protocol, at most `max_folds` of the protocol's folds, each
checked for speaker leaks); `finish_run` aggregates the folds' metrics into metrics.json's dict and
writes the run directory. `experiment.cross_validate` and `baseline.cross_validate_baseline` both
use them, so the two cannot drift apart, and neither imports the other for it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .corpora import Utterance
from .evaluate import aggregate
from .splits import Fold, check_no_leak, labels_for, make_folds


class FoldPlan(NamedTuple):
    """What a cross-validation run runs over."""

    utts: list[Utterance]  # the utterances the experiment's filters keep
    y: np.ndarray  # (N,) int64 class indices
    classes: list[str]  # class names, index k is class k
    folds: list[Fold]  # the folds to run: the protocol's first max_folds, or all
    folds_total: int  # how many folds the protocol has (reports say "2 of 6 folds")


def plan_folds(manifest: Sequence[Utterance], exp) -> FoldPlan:
    """The folds of `exp` (an experiment.Experiment) over `manifest`; ValueError when the filters leave
    nothing, LeakError when a speaker-independent fold shares a speaker between its parts."""
    utts = exp.select(manifest)
    if not utts:
        raise ValueError("no utterances left after the filters")
    y, classes = labels_for(utts, exp.task)
    folds = make_folds(exp.protocol, utts, y, folds=exp.folds, seed=exp.seed, ratios=exp.ratios,
                       repeats=exp.repeats, val_speakers=exp.val_speakers)
    folds_total = len(folds)
    folds = folds[: exp.max_folds] if exp.max_folds else folds
    if exp.extra_train:
        utts, y, folds = with_extra_training(utts, y, classes, folds, exp)
    speakers = [u.speaker for u in utts]
    for fold in folds:
        if fold.speaker_independent:
            check_no_leak(fold, speakers)
    return FoldPlan(utts, np.asarray(y, dtype=np.int64), classes, folds, folds_total)


def with_extra_training(utts: list[Utterance], y: np.ndarray, classes: list[str], folds: list[Fold], exp):
    """The run's utterances, labels and folds with `exp.extra_train`'s clips appended to every fold's
    training side. Where the experiment filters on intensity, gender or emotion, only clips with a value
    the run's own clips have join; never a filter on channel (the other channel of the same actors is
    what one adds); and only clips of `classes`: the run's classes and test folds do not
    change. In a speaker-independent fold, clips of its validation and test speakers stay out; files the
    run already holds are not added twice. ValueError when no clip of the extra corpora qualifies."""
    import dataclasses

    from .experiment import load_corpora  # experiment imports this module

    held_paths = {u.path for u in utts}
    extra = list(load_corpora(exp.extra_train))
    for attr, wanted in (("intensity", exp.intensity), ("gender", exp.gender), ("emotion", exp.emotions)):
        if wanted is not None:  # the run filters on it: what its own clips hold
            have = {getattr(u, attr) for u in utts}
            extra = [u for u in extra if getattr(u, attr) in have]
    label = (lambda u: u.gender) if exp.task == "gender" else (lambda u: u.emotion)
    extra = [u for u in extra if label(u) in classes and u.path not in held_paths]
    if not extra:
        raise ValueError(f"extra_train: no clip of {', '.join(exp.extra_train)} has one of the run's classes "
                         f"({', '.join(classes)})")
    idx = np.arange(len(utts), len(utts) + len(extra))
    extra_speakers = np.array([u.speaker for u in extra])
    widened = []
    for fold in folds:
        keep = idx
        if fold.speaker_independent:
            held = sorted({utts[i].speaker for i in np.concatenate([fold.val, fold.test])})
            keep = idx[~np.isin(extra_speakers, held)]
        widened.append(dataclasses.replace(fold, train=np.concatenate([np.asarray(fold.train, np.int64), keep])))
    y_extra = np.array([classes.index(label(u)) for u in extra], dtype=np.int64)
    return list(utts) + extra, np.concatenate([np.asarray(y, np.int64), y_extra]), widened


def finish_run(run_dir: Path, exp, config: dict, plan: FoldPlan, fold_metrics: list[dict], histories: list[dict],
               t0: float) -> dict:
    """metrics.json's dict from the folds' metrics; writes the run directory (config, metrics, report, plots).

    `exp` is the experiment.Experiment that ran, `config` what config.json holds, `t0` the run's
    start (time.perf_counter()).
    """
    from .report import write_run

    metrics = {
        "protocol": exp.protocol,
        "speaker_independent": plan.folds[0].speaker_independent,
        "task": exp.task,
        "model": exp.model,
        "classes": plan.classes,
        "n_utterances": len(plan.utts),
        "n_speakers": len({u.speaker for u in plan.utts}),
        "seconds": round(time.perf_counter() - t0, 1),
        "folds_total": plan.folds_total,  # the protocol's folds; fewer ran when max_folds was set
        **aggregate(fold_metrics),
        "folds": fold_metrics,
    }
    kept = validation_at_best(fold_metrics, histories)
    if kept:
        metrics["validation_at_best"] = kept
    counts = {c: int((plan.y == k).sum()) for k, c in enumerate(plan.classes)}
    write_run(run_dir, config=config, metrics=metrics, histories=histories, class_counts=counts,
              title=f"{exp.model} on {exp.task}: {exp.protocol}", overwrite=True)
    return metrics


def validation_at_best(fold_metrics: list[dict], histories: list[dict] | None) -> dict | None:
    """The validation clips' WA and UA at the epoch each fold kept, {"wa", "ua": {"mean", "std",
    "folds"}}: what a paper that reports validation accuracy reports (it chose that epoch on the same
    clips, so it is optimistic next to the test figure). None when a fold has no validation curve
    (SVM baselines, runs without validation clips)."""
    wa, ua = [], []
    for m, h in zip(fold_metrics, histories or []):
        e = m.get("best_epoch")
        vals = (h or {}).get("val_acc") or []
        if e is None or not 0 <= e < len(vals) or vals[e] is None:
            return None
        wa.append(vals[e])
        ua.append(h["val_ua"][e])
    if not wa or len(wa) != len(fold_metrics):
        return None
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": [float(x) for x in v]}
            for k, v in (("wa", wa), ("ua", ua))}
