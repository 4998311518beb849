"""A per-window run's test folds scored again with the majority vote of a clip's windows.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/clip_vote.py RUN_DIR [--data ../shared/data/emodb]

voxemo gives a per-window model's clip the mean of its windows' probabilities; seed 004_d4c4 takes
the majority vote of a clip's 128 x 128 patches (a tie goes to the class of higher mean
probability). RUN_DIR is a `voxemo cv` or `reproduce` run directory of a per-window model whose
finished folds kept their checkpoint (`foldNN/last.safetensors`, whose "best" weights are the ones
the fold was scored with). Each such fold is rebuilt from the run's config.json (same corpus,
protocol and seed, so the same split), its test clips heard as `voxemo predict` hears them, and
scored both ways with the same weights. The mean's figures must equal the fold's metrics.json (a
check that the fold was rebuilt right); the vote's show what the paper's rule would have given.
Printed: macro-F1, UA and WA per fold and their means, both ways.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from voxemo.corpora import scan
from voxemo.evaluate import classification_metrics
from voxemo.experiment import Experiment, build, load_clips
from voxemo.runs import plan_folds

REPO = Path(__file__).resolve().parents[1]
METRICS = ("macro_f1", "ua", "wa")


def window_probabilities(pipe, clip: np.ndarray) -> np.ndarray:
    """A decoded clip's probabilities per window (W, K): every patch of every prepared window."""
    waves = torch.from_numpy(np.ascontiguousarray(pipe.audio.windows(clip), dtype=np.float32))
    with torch.inference_mode():
        return (pipe.logits(pipe.features(waves)) / pipe.temperature).softmax(-1).flatten(0, 1).numpy()


def vote(probs: np.ndarray) -> int:
    """The class most windows pick; a tie goes to the tied class of higher mean probability."""
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    tied = np.flatnonzero(counts == counts.max())
    return int(tied[probs.mean(0)[tied].argmax()])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "emodb")
    args = ap.parse_args()
    config = json.loads((args.run_dir / "config.json").read_text())
    exp = Experiment(**{k: v for k, v in config.items() if k in Experiment.__dataclass_fields__})
    if not exp.recipe().per_window:
        raise SystemExit(f"{args.run_dir}: {exp.model} is not a per-window model: a clip has one window")
    plan = plan_folds(scan(args.data), exp)
    clips = load_clips(plan.utts, exp.audio)
    k = len(plan.classes)
    scores = {"mean": [], "vote": []}
    for i, fold in enumerate(plan.folds):
        fold_dir = args.run_dir / f"fold{i + 1:02d}"
        if not (fold_dir / "metrics.json").is_file() or not (fold_dir / "last.safetensors").is_file():
            continue
        pipe = build(exp, plan.classes)
        saved = load_file(str(fold_dir / "last.safetensors"))
        pipe.load_state_dict({n[len("best."):]: v for n, v in saved.items() if n.startswith("best.")})
        pipe.eval()
        probs = [window_probabilities(pipe, clips[j]) for j in fold.test]
        ways = {"mean": np.array([p.mean(0).argmax() for p in probs]), "vote": np.array([vote(p) for p in probs])}
        recorded = json.loads((fold_dir / "metrics.json").read_text())["metrics"]
        line = []
        for way, pred in ways.items():
            m = classification_metrics(plan.y[fold.test], pred, list(range(k)))
            scores[way].append([m[name] for name in METRICS])
            line.append(f"{way} " + " ".join(f"{name} {100 * m[name]:.1f}" for name in METRICS))
        rebuilt = np.isclose(scores["mean"][-1][0], recorded["macro_f1"])
        print(f"fold {i + 1:2d} ({fold.name}): " + "; ".join(line)
              + ("" if rebuilt else f"  [NOT the recorded macro_f1 {100 * recorded['macro_f1']:.1f}: fold not rebuilt right]"),
              flush=True)
    if not scores["mean"]:
        raise SystemExit(f"{args.run_dir}: no finished fold kept its checkpoint (foldNN/last.safetensors)")
    for way, rows in scores.items():
        a = 100 * np.array(rows)
        print(f"{way} over {len(rows)} folds: " + ", ".join(f"{name} {m:.1f} ± {s:.1f}"
                                                          for name, m, s in zip(METRICS, a.mean(0), a.std(0))))


if __name__ == "__main__":
    main()
