"""Late fusion of the encoder head with voxemo_net's log-mel branch: does it lift RAVDESS song?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fusion.py [--data DIR] [--corpus ravdess_song]
        [--encoder-model encoder_ensemble] [--encoder-config configs/average_last20.toml]
        [--out runs/fusion-ravdess_song.json]

Song is where the frozen Whisper encoder helps least (RESULTS.md: the linear probe is best on the conv
stem, and voxemo_net, a CNN on log-mel, is level with the single-clip encoder head), so the issue asks
to try a fusion with the log-mel branch. This is the simplest fusion that keeps both models as they
are measured elsewhere: on every fold of the corpus's speaker-independent protocol (RAVDESS: 6 actor
folds; the same folds for every model, checked), train the encoder model on single clips and with
per-speaker normalisation (`speaker_norm`), and voxemo_net, each through `experiment.train_fold`;
score the test speakers' clips through each whole pipeline as `voxemo predict` (or, per speaker,
`voxemo evaluate`) hears them (`Pipeline.hear`), and fuse an encoder model's probabilities with
voxemo_net's as `voxemo fuse` does (`fusion.Fusion`, equal weights: fixed in advance, nothing is
chosen on a test fold; `voxemo fuse ENCODER_PIPE NET_PIPE --out F` packages the pair). A second pair
of fusion rows weighs the two by the weight that scores best on the fold's validation speakers
(`fusion.choose_weights`, the encoder's weight from 0.1 to 0.9; `voxemo fuse --weights-from`), so a
weaker branch can be given less say without looking at a test clip. Printed side by side per fold
and as mean ± std over folds: UA of each model and of each fusion, against the issue's goal (song 85).

Each finished fold is written to --out at once; a rerun with the same --out skips finished folds (the
whole run is about half an hour on one core, most of it voxemo_net).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from voxemo.corpora import scan
from voxemo.evaluate import classification_metrics
from voxemo.experiment import Experiment, load_clips, model_inputs, train_fold
from voxemo.fusion import Fusion, choose_weights
from voxemo.runs import plan_folds

REPO = Path(__file__).resolve().parents[1]
GOALS = {"ravdess_song": 0.85, "ravdess_speech": 0.80, "emodb": 0.93}


def ua(y: np.ndarray, probs: np.ndarray, k: int) -> float:
    return classification_metrics(y, probs.argmax(1), list(range(k)))["ua"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--corpus", default="ravdess_song", choices=sorted(GOALS))
    ap.add_argument("--encoder-model", default="encoder_ensemble")
    ap.add_argument("--encoder-config", type=Path, default=None,
                    help="a TOML config for the encoder model (as `voxemo cv --config`); --encoder-model wins over its model")
    ap.add_argument("--out", type=Path, default=None, help="per-fold results (JSON); default runs/fusion-CORPUS.json")
    args = ap.parse_args()
    out = args.out or REPO / "runs" / f"fusion-{args.corpus}.json"
    protocol = "loso" if args.corpus == "emodb" else "speaker-kfold"
    models = {"encoder": Experiment.from_config(args.encoder_config, model=args.encoder_model, protocol=protocol),
              "encoder_sn": Experiment.from_config(args.encoder_config, model=args.encoder_model, protocol=protocol,
                                                   speaker_norm=True),
              "voxemo_net": Experiment(model="voxemo_net", protocol=protocol)}
    manifest = scan(args.data / args.corpus)
    plans = {name: plan_folds(manifest, exp) for name, exp in models.items()}
    plan, *others = plans.values()
    for b in others:
        if [u.path for u in plan.utts] != [u.path for u in b.utts] or [f.test.tolist() for f in plan.folds] != [
                f.test.tolist() for f in b.folds]:
            raise SystemExit("the models' folds differ; the fusion needs the same test clips")
    k = len(plan.classes)
    labels = torch.as_tensor(plan.y)
    speakers = np.array([u.speaker for u in plan.utts])
    done = json.loads(out.read_text()) if out.exists() else {}
    clips = {name: load_clips(plan.utts, exp.audio) for name, exp in models.items()}
    inputs = {name: model_inputs(exp, plan.utts, clips[name]) for name, exp in models.items()}
    t0 = time.perf_counter()
    for i, fold in enumerate(plan.folds, 1):
        if fold.name in done:
            continue
        probs, val_probs, pipes = {}, {}, {}
        for name, exp in models.items():
            pipes[name], _, _ = train_fold(exp, clips[name], inputs[name], labels, plan.classes, fold,
                                           speakers=speakers if exp.speaker_norm else None)
            for got, rows in ((probs, fold.test), (val_probs, fold.val)):
                who = [str(s) for s in speakers[rows]] if exp.speaker_norm else None
                got[name] = pipes[name].hear([clips[name][j] for j in rows], who)
        y = plan.y[fold.test]
        row = {name: ua(y, p, k) for name, p in probs.items()}
        for fused, enc in (("fusion", "encoder"), ("fusion_sn", "encoder_sn")):  # what `voxemo fuse` of the two gives
            pair = [pipes[enc], pipes["voxemo_net"]]
            row[fused] = ua(y, Fusion(pair).weigh([probs[enc], probs["voxemo_net"]]), k)
            weights, _ = choose_weights([val_probs[enc], val_probs["voxemo_net"]], plan.y[fold.val])
            row[f"{fused}_val"] = ua(y, Fusion(pair, weights).weigh([probs[enc], probs["voxemo_net"]]), k)
            row[f"{fused}_val_weight"] = weights[0]  # the encoder's, chosen on the validation speakers
        done[fold.name] = row
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1))
        print(f"fold {i}/{len(plan.folds)} ({fold.name}): " + "  ".join(f"{n} {v:.3f}" for n, v in row.items())
              + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)

    rows = [done[f.name] for f in plan.folds if f.name in done]
    print(f"\n{args.corpus}, {k} classes, {protocol}, {len(rows)} of {len(plan.folds)} folds; UA mean ± std over folds")
    print(f"{'model':50s} {'UA':>14s}   goal {GOALS[args.corpus]:.2f}")
    m = args.encoder_model
    for name, label in (("encoder", f"{m}, single clips"), ("voxemo_net", "voxemo_net (log-mel CNN)"),
                        ("fusion", f"fusion: {m} + voxemo_net"),
                        ("fusion_val", "fusion, weights chosen on validation speakers"),
                        ("encoder_sn", f"{m}, per-speaker normalisation"),
                        ("fusion_sn", f"fusion: {m} per speaker + voxemo_net"),
                        ("fusion_sn_val", "fusion per speaker, weights chosen on validation")):
        if not all(name in r for r in rows):  # a row of a run from before it was measured
            continue
        v = np.array([r[name] for r in rows])
        chosen = ""
        if name.endswith("_val"):
            chosen = "   encoder weight per fold: " + " ".join(f"{r[name + '_weight']:.1f}" for r in rows)
        print(f"{label:50s} {100 * v.mean():6.1f} ± {100 * v.std():4.1f}   "
              f"{'met' if v.mean() >= GOALS[args.corpus] else 'NOT met'}{chosen}")


if __name__ == "__main__":
    main()
