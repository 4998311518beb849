"""Where an unfinished long run stands: its finished folds' figures, and the reference's on those folds.

    python scripts/ledger_progress.py results/full-seed004/row02-paper_protocol \\
        [--reference results/full-seed004/row04-paper_protocol] [--metric macro_f1] [--folds 40]

`voxemo reproduce --full` writes a row's table only when all its folds are done; a row of 50 folds
spans sittings, and RESULTS.md quotes it as it goes. RUN_DIR is one experiment of such a run
(`rowNN-PROTOCOL`), each finished fold a `foldNN/metrics.json` (or a `voxemo cv` run's folder). Printed: the folds finished, their
mean ± std (`evaluate.aggregate`, as the finished table will give it), each fold's figure, the wall
time they took, and, with `--reference` (another run, finished like the ComParE + SVM row or not),
the reference's figures over the same test folds: same fold name and same number of test clips, as
`recipes.same_folds` matches them (a LEAKY row's oversampled corpus has folds of its own, so none).
With `--training`, each fold's training as its history recorded it: epochs run, the best
validation epoch (on what the run's early stopping watched: its config.json's monitor, the
validation UA unless it says the loss), the lowest validation loss and its epoch, the lowest
training loss and the highest training accuracy (dropout on); then, over those folds, the median and
range of the epochs run and of the epoch kept. With `--folds N`, only the first N
folds: the ledger as it stood when RESULTS.md quoted the row at N folds, so those figures stay
reproducible after the row has run on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median

from voxemo.evaluate import aggregate


def fold_key(m: dict) -> tuple[str, int]:
    return m["fold"], m["n_test"]


def fold_files(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("fold*/metrics.json"))]


def finished_folds(run_dir: Path) -> list[tuple[dict, float | None]]:
    """Each finished fold's (metrics, seconds): its fold*/metrics.json, else (a run that kept none) the run's metrics.json."""
    if folds := fold_files(run_dir):
        return [(d["metrics"], d["seconds"]) for d in folds]
    if (run_dir / "metrics.json").exists():
        return [(m, None) for m in json.loads((run_dir / "metrics.json").read_text())["folds"]]
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--reference", type=Path, help="another run (finished or not) to score on the same test folds")
    ap.add_argument("--metric", default="macro_f1", choices=("macro_f1", "ua", "wa"))
    ap.add_argument("--training", action="store_true", help="each fold's epochs, training loss and accuracy")
    ap.add_argument("--folds", type=int, help="only the first N finished folds")
    args = ap.parse_args()

    done = finished_folds(args.run_dir)[: args.folds]
    if not done:
        raise SystemExit(f"{args.run_dir}: no finished folds (fold*/metrics.json)")
    folds = [m for m, _ in done]
    agg = aggregate(folds)[args.metric]
    seconds = [sec for _, sec in done if sec is not None]
    print(f"{args.run_dir}: {len(folds)} folds finished, {args.metric} {100 * agg['mean']:.1f} ± "
          f"{100 * agg['std']:.1f}" + (f", {sum(seconds) / 60:.1f} min of wall time" if seconds else ""))
    print("  per fold:", " ".join(f"{100 * v:.1f}" for v in agg["folds"]))
    if args.reference:
        ref = {fold_key(m): m for m, _ in finished_folds(args.reference)}
        same = [ref.get(fold_key(m)) for m in folds]
        if None in same:
            print(f"  reference: {args.reference} did not run these test folds")
        else:
            r = aggregate(same)[args.metric]
            print(f"  reference on the same {len(same)} folds: {args.metric} {100 * r['mean']:.1f} ± {100 * r['std']:.1f}")

    if args.training:
        config = args.run_dir / "config.json"
        monitor = json.loads(config.read_text())["train_resolved"]["monitor"] if config.exists() else "val_ua"
        ran, kept = [], []
        for i, d in enumerate(fold_files(args.run_dir)[: args.folds], 1):
            h = d["history"]
            lowest_loss = min(range(len(h["val_loss"])), key=h["val_loss"].__getitem__)
            best = lowest_loss if monitor == "val_loss" else max(range(len(h[monitor])), key=h[monitor].__getitem__)
            ran.append(len(h["train_loss"]))
            kept.append(best + 1)
            print(f"  fold {i}: {len(h['train_loss'])} epochs, best validation epoch {best + 1} ({monitor}), "
                  f"lowest validation loss {h['val_loss'][lowest_loss]:.2f} at epoch {lowest_loss + 1}, lowest "
                  f"training loss {min(h['train_loss']):.2f}, highest training accuracy {max(h['train_acc']):.2f}")
        if ran:
            print(f"  over the {len(ran)} folds: epochs run median {median(ran):g} ({min(ran)} to {max(ran)}), "
                  f"epoch kept median {median(kept):g} ({min(kept)} to {max(kept)})")


if __name__ == "__main__":
    main()
