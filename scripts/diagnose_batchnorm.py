"""Is a run's "collapse" in its BatchNorm statistics? Score one fold's last weights three ways.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diagnose_batchnorm.py RUN_DIR [--data ../shared/data/emodb]
        [--fold 1] [--weights model|best]

RUN_DIR is a `voxemo cv` run directory whose fold kept its checkpoint (`foldNN/last.safetensors`: the
weights after the last epoch, "model", and those of the best validation epoch, "best"). The fold is
rebuilt from the run's config.json (same corpus, protocol and seed, so the same split), and its
validation and test clips are scored with the weights loaded:
1. with the BatchNorm statistics the training gathered (what the run's evaluation used);
2. with every BatchNorm's statistics recomputed over the fold's training clips, dropout off
   (`train.recompute_batchnorm`, what `recompute_bn` does before each validation);
3. the same recomputation with dropout on, as training gathers them.
If (1) and (3) predict one class and (2) does not, the network learned and its evaluation collapsed
on statistics that dropout shifted (Li et al. 2019): seed004's TD-CNN + LSTM (RESULTS.md).
Printed: UA, WA and how many clips each class received, per part and way.
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
from voxemo.experiment import Experiment, build, load_clips, training_crops
from voxemo.runs import plan_folds
from voxemo.train import feature_batches, recompute_batchnorm

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "emodb")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--weights", choices=("model", "best"), default="model",
                    help="the last epoch's weights (model) or the best validation epoch's (best)")
    args = ap.parse_args()
    config = json.loads((args.run_dir / "config.json").read_text())
    keys = {f for f in Experiment.__dataclass_fields__}
    exp = Experiment(**{k: v for k, v in config.items() if k in keys})
    plan = plan_folds(scan(args.data), exp)
    fold = plan.folds[args.fold - 1]
    x = training_crops(load_clips(plan.utts, exp.audio), exp.audio)
    pipe = build(exp, plan.classes)
    saved = load_file(str(args.run_dir / f"fold{args.fold:02d}" / "last.safetensors"))
    prefix = f"{args.weights}."
    pipe.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})
    k = len(plan.classes)
    batch = exp.train_config().batch_size

    def score(way: str):
        for part in ("val", "test"):
            rows = getattr(fold, part)
            with torch.no_grad():
                probs = [pipe.logits(f).softmax(-1) for f in feature_batches(pipe, x[rows], batch)]
            p = torch.cat([q.mean(1) if q.dim() == 3 else q for q in probs]).argmax(-1).numpy()
            m = classification_metrics(plan.y[rows], p, list(range(k)))
            print(f"{way:58s} {part:4s} UA {m['ua']:.3f} WA {m['wa']:.3f}  clips per predicted class "
                  f"{np.bincount(p, minlength=k).tolist()}", flush=True)

    print(f"{args.run_dir} fold {args.fold} ({fold.name}), {args.weights} weights; classes {', '.join(plan.classes)}")
    score("1. BatchNorm statistics as training gathered them")
    state = {n: b.clone() for n, b in pipe.state_dict().items()}
    recompute_batchnorm(pipe, feature_batches(pipe, x[fold.train], batch))
    score("2. recomputed on the training clips, dropout off")
    pipe.load_state_dict(state)
    recompute_batchnorm(pipe, feature_batches(pipe, x[fold.train], batch), dropout=True)
    score("3. recomputed on the training clips, dropout on")


if __name__ == "__main__":
    main()
