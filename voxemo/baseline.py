"""The classic reference: openSMILE functionals + a linear SVM, under the same folds as the networks.

`voxemo cv DATA --model compare_svm` (or `egemaps_svm`) runs it through `cross_validate`, so it
gets the same protocols, leak guard, run directory and metrics as every network. Per fold: the
features are standardised with statistics of the training speakers only; the SVM's C is chosen
on the fold's validation speakers (never the test fold) and the SVM is then refit on training plus
validation clips with that C (libsvm's linear kernel, one-vs-one). Class weights are balanced, which is what UA rewards.

Functionals are computed on the whole clip (no crop: a functional summarises a clip of any
length), once per file and audio setting, and cached beside the waveforms.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .audio import SAMPLE_RATE, AudioSettings
from .cache import WaveformCache
from .corpora import Utterance
from .evaluate import classification_metrics
from .runs import finish_run, plan_folds

BASELINES = {"egemaps_svm": "egemaps", "compare_svm": "compare"}
C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
WHOLE_CLIP = AudioSettings(SAMPLE_RATE)


class SmileCache(WaveformCache):
    """Per-file openSMILE functionals, cached like waveforms (key: path, size, mtime, settings, set)."""

    def __init__(self, feature_set: str, settings: AudioSettings = WHOLE_CLIP, root=None):
        super().__init__(settings, root)
        self.feature_set = feature_set
        self.dir = self.dir.with_name(f"{settings.key()}-smile-{feature_set}")

    def compute(self, path) -> np.ndarray:
        from .features import smile_functionals

        feats, _ = smile_functionals([self.settings.load(path)], self.settings.sample_rate, self.feature_set)
        return feats[0]


def smile_features(utts: Sequence[Utterance], feature_set: str, *, progress: Callable[[int], None] | None = None,
                   cache_dir=None) -> np.ndarray:
    """(N, D) functionals for the utterances, in order."""
    cache = SmileCache(feature_set, root=cache_dir)
    return np.stack(cache.load_many([u.path for u in utts], progress=progress))


def fit_svm(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, n_classes: int | None = None):
    """Standardise on the training rows, pick C by validation UA, refit on train + val; returns (model, C)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def make(c):  # libsvm's linear kernel: seconds per fit on 6373 ComParE features, where liblinear takes minutes
        return make_pipeline(StandardScaler(), SVC(kernel="linear", C=c, class_weight="balanced"))

    best_c = C_GRID[len(C_GRID) // 2]
    if x_val is not None and len(x_val):
        labels = list(range(n_classes or int(max(y_train.max(), y_val.max())) + 1))
        scores = [classification_metrics(y_val, make(c).fit(x_train, y_train).predict(x_val), labels)["ua"]
                  for c in C_GRID]
        best_c = C_GRID[int(np.argmax(scores))]
        x_train, y_train = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    return make(best_c).fit(x_train, y_train), best_c


def cross_validate_baseline(manifest: Sequence[Utterance], exp, run_dir: Path, *,
                            on_fold: Callable[[int, int, dict], None] | None = None,
                            decode_progress: Callable[[int], None] | None = None) -> dict:
    """`experiment.cross_validate` for an SVM on functionals: same folds, same metrics.json."""
    feature_set = BASELINES[exp.model]
    plan = plan_folds(manifest, exp)
    utts, y, classes, folds = plan.utts, plan.y, plan.classes, plan.folds
    t0 = time.perf_counter()
    x = smile_features(utts, feature_set, progress=decode_progress)
    unused = ("audio", "frontend", "model_overrides", "train", "per_gender", "route_by")  # a network's settings
    config = {**{k: v for k, v in dataclasses.asdict(exp).items() if k not in unused}, "features": f"openSMILE {feature_set} functionals, whole clip at 16 kHz",
              "classifier": "StandardScaler + SVC(kernel=linear, class_weight=balanced), C chosen on validation speakers",
              "c_grid": list(C_GRID)}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    fold_metrics = []
    for i, fold in enumerate(folds):
        model, c = fit_svm(x[fold.train], y[fold.train], x[fold.val], y[fold.val], len(classes))
        m = classification_metrics(y[fold.test], model.predict(x[fold.test]), list(range(len(classes))))
        m.update(classes=classes, fold=fold.name, svm_c=c, n_train=len(fold.train), n_val=len(fold.val),
                 n_test=len(fold.test), epochs_run=None)
        fold_metrics.append(m)
        if on_fold:
            on_fold(i, len(folds), m)
    return finish_run(run_dir, exp, config, plan, fold_metrics, [], t0)
