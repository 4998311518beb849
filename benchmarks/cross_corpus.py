"""Across corpora: train on one shared corpus, score on another, against the issue's goal (UA >= 65).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cross_corpus.py [--data DIR] [--variants a,b]
        [--out runs/cross-corpus.json]

Each variant is an encoder model trained as `voxemo train` trains it (`experiment.train_pipeline`:
every speaker of the training corpus but 2 validation speakers, early stopping on those) and scored as
`voxemo evaluate` scores it on the other corpus (`experiment.score_pipeline`: the corpus's clips whose
emotion the model knows, predictions restricted to the emotions the two corpora share, here neutral,
happy, sad, angry, fearful and disgust; chance 1/6). Both directions, RAVDESS speech -> EmoDB and
EmoDB -> RAVDESS speech. Single clips, or with per-speaker normalisation (`speaker_norm`: each test
speaker standardised over all their clips, unlabelled), or single clips from a model adapted to the
scored corpus (`-adapt`: `voxemo adapt`, the normaliser refit on all the corpus's clips, unlabelled;
one corpus is one domain here). Printed side by side: UA and WA of every
variant and direction, and the goal.

Each finished cell is written to --out at once; a rerun with the same --out skips finished cells.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from voxemo.adapt import adapt
from voxemo.corpora import scan
from voxemo.experiment import Experiment, score_pipeline, train_pipeline
from voxemo.papers import ENCODER_TRAIN

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.65
LAYERS04 = {"layers": [0, 1, 2, 3, 4]}  # the default model's layers (configs/encoder_head_layers04.toml)
HEAD_TRAIN = ENCODER_TRAIN.to_dict()  # the heads' training, for the probe rows measured with it
AVERAGE_LAST20 = {"average_last": 20}  # no validation choice: the mean of the last 20 epochs' weights
VARIANTS = {  # name -> (what it is, Experiment arguments[, "adapt": adapted to the scored corpus])
    "all": ("encoder_head, all layers, single clips", dict(model="encoder_head")),
    "all-sn": ("encoder_head, all layers, per-speaker normalisation", dict(model="encoder_head", speaker_norm=True)),
    "l04": ("encoder_head, layers 0-4, single clips", dict(model="encoder_head", model_overrides=LAYERS04)),
    "l04-sn": ("encoder_head, layers 0-4, per-speaker normalisation",
               dict(model="encoder_head", model_overrides=LAYERS04, speaker_norm=True)),
    "ens04": ("encoder_ensemble (5 heads), layers 0-4, single clips",
              dict(model="encoder_ensemble", model_overrides=LAYERS04)),
    "ens04-sn": ("encoder_ensemble (5 heads), layers 0-4, per-speaker normalisation",
                 dict(model="encoder_ensemble", model_overrides=LAYERS04, speaker_norm=True)),
    "dc04": ("layers 0-4, one degraded copy of each training clip, single clips",
             dict(model="encoder_head", model_overrides=LAYERS04, degraded_copies=1)),
    "dc04-sn": ("layers 0-4, one degraded copy of each training clip, per-speaker normalisation",
                dict(model="encoder_head", model_overrides=LAYERS04, degraded_copies=1, speaker_norm=True)),
    "edc04": ("encoder_ensemble, layers 0-4, one degraded copy, single clips",
              dict(model="encoder_ensemble", model_overrides=LAYERS04, degraded_copies=1)),
    "edc04-sn": ("encoder_ensemble, layers 0-4, one degraded copy, per-speaker normalisation",
                 dict(model="encoder_ensemble", model_overrides=LAYERS04, degraded_copies=1, speaker_norm=True)),
    "l04-adapt": ("encoder_head, layers 0-4, single clips, adapted to the scored corpus (voxemo adapt: its "
                  "unlabelled clips' statistics)", dict(model="encoder_head", model_overrides=LAYERS04), "adapt"),
    "dc04-adapt": ("layers 0-4, one degraded copy of each training clip, single clips, adapted (voxemo adapt)",
                   dict(model="encoder_head", model_overrides=LAYERS04, degraded_copies=1), "adapt"),
    "vc2-sn": ("layers 0-4, two voice copies (speeds 0.9, 1.1) of each training clip, per-speaker normalisation",
               dict(model="encoder_head", model_overrides=LAYERS04, voice_copies=2, speaker_norm=True)),
    "vc2": ("layers 0-4, two voice copies (speeds 0.9, 1.1) of each training clip, single clips",
            dict(model="encoder_head", model_overrides=LAYERS04, voice_copies=2)),
    "vc2-adapt": ("layers 0-4, two voice copies of each training clip, single clips, adapted (voxemo adapt)",
                  dict(model="encoder_head", model_overrides=LAYERS04, voice_copies=2), "adapt"),
    "dcvc2-sn": ("layers 0-4, one degraded copy and two voice copies of each training clip, per-speaker normalisation",
                 dict(model="encoder_head", model_overrides=LAYERS04, degraded_copies=1, voice_copies=2,
                      speaker_norm=True)),
    # the two probe rows of 2026-12-03, trained as the heads were (early stopping); the probe's own
    # recipe (a logistic regression to its optimum) is the "probe" rows below
    "probe4-sn": ("encoder_probe (linear) on layer 4, per-speaker normalisation",
                  dict(model="encoder_probe", model_overrides={"layers": [4]}, train=HEAD_TRAIN, speaker_norm=True)),
    "probe26-sn": ("encoder_probe (linear) on layers 2-6, per-speaker normalisation",
                   dict(model="encoder_probe", model_overrides={"layers": [2, 3, 4, 5, 6]}, train=HEAD_TRAIN,
                        speaker_norm=True)),
    "probe": ("encoder_probe (logistic regression) on every layer, single clips", dict(model="encoder_probe")),
    "probe-sn": ("encoder_probe (logistic regression) on every layer, per-speaker normalisation",
                 dict(model="encoder_probe", speaker_norm=True)),
    "probe04": ("encoder_probe (logistic regression) on layers 0-4, single clips",
                dict(model="encoder_probe", model_overrides=LAYERS04)),
    "probe-adapt": ("encoder_probe (logistic regression) on every layer, single clips, adapted (voxemo adapt)",
                    dict(model="encoder_probe"), "adapt"),
    "probe04-adapt": ("encoder_probe (logistic regression) on layers 0-4, single clips, adapted (voxemo adapt)",
                      dict(model="encoder_probe", model_overrides=LAYERS04), "adapt"),
    "probe04-sn": ("encoder_probe (logistic regression) on layers 0-4, per-speaker normalisation",
                   dict(model="encoder_probe", model_overrides=LAYERS04, speaker_norm=True)),
    "l04-lin-sn": ("encoder_head, layers 0-4, linear after the layer sum, per-speaker normalisation",
                   dict(model="encoder_head", model_overrides={**LAYERS04, "hidden": 0}, speaker_norm=True)),
    "l04-raw-sn": ("encoder_head, layers 0-4, no per-clip norm, per-speaker normalisation",
                   dict(model="encoder_head", model_overrides={**LAYERS04, "per_clip_norm": False}, speaker_norm=True)),
    "l04-cw": ("encoder_head, layers 0-4, class-weighted loss, single clips",
               dict(model="encoder_head", model_overrides=LAYERS04, train={"class_weights": True})),
    "l04-cw-sn": ("encoder_head, layers 0-4, class-weighted loss, per-speaker normalisation",
                  dict(model="encoder_head", model_overrides=LAYERS04, train={"class_weights": True}, speaker_norm=True)),
    "l04-cw-sn-seed1": ("the same, another seed (1: initialisation, batch order, validation speakers)",
                        dict(model="encoder_head", model_overrides=LAYERS04, train={"class_weights": True},
                             speaker_norm=True, seed=1)),
    "l04-cw-sn-seed2": ("the same, seed 2", dict(model="encoder_head", model_overrides=LAYERS04,
                                                 train={"class_weights": True}, speaker_norm=True, seed=2)),
    "l04-sn-seed1": ("encoder_head, layers 0-4, per-speaker normalisation, seed 1 (no class weights)",
                     dict(model="encoder_head", model_overrides=LAYERS04, speaker_norm=True, seed=1)),
    "l04-sn-seed2": ("the same, seed 2", dict(model="encoder_head", model_overrides=LAYERS04, speaker_norm=True, seed=2)),
    "l04-cw-adapt": ("encoder_head, layers 0-4, class-weighted loss, single clips, adapted (voxemo adapt)",
                     dict(model="encoder_head", model_overrides=LAYERS04, train={"class_weights": True}), "adapt"),
    "dc04-cw-sn": ("layers 0-4, one degraded copy of each training clip, class-weighted loss, per-speaker normalisation",
                   dict(model="encoder_head", model_overrides=LAYERS04, degraded_copies=1, train={"class_weights": True},
                        speaker_norm=True)),
    "vc2-cw": ("layers 0-4, two voice copies of each training clip, class-weighted loss, single clips",
               dict(model="encoder_head", model_overrides=LAYERS04, voice_copies=2, train={"class_weights": True})),
    "ens04-avg": ("encoder_ensemble, layers 0-4, mean of the last 20 of 60 epochs (no validation choice), single clips",
                  dict(model="encoder_ensemble", model_overrides=LAYERS04, train=AVERAGE_LAST20)),
    "ens04-avg-sn": ("encoder_ensemble, layers 0-4, mean of the last 20 epochs, per-speaker normalisation",
                     dict(model="encoder_ensemble", model_overrides=LAYERS04, train=AVERAGE_LAST20, speaker_norm=True)),
    "ens04-avg-cw-sn": ("encoder_ensemble, layers 0-4, mean of the last 20 epochs, class-weighted loss, "
                        "per-speaker normalisation", dict(model="encoder_ensemble", model_overrides=LAYERS04,
                                                          train={**AVERAGE_LAST20, "class_weights": True},
                                                          speaker_norm=True)),
}
DIRECTIONS = (("ravdess_speech", "emodb"), ("emodb", "ravdess_speech"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "cross-corpus.json")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    corpora = {name: scan(args.data / name) for name in {c for d in DIRECTIONS for c in d}}
    for name in names:
        for source, target in DIRECTIONS:
            cell = f"{name}|{source}->{target}"
            if cell in done:
                continue
            t0 = time.perf_counter()
            pipe, _, _ = train_pipeline(corpora[source], Experiment(**VARIANTS[name][1]))
            if "adapt" in VARIANTS[name][2:]:  # the normaliser refit on the scored corpus's clips, labels unused
                adapt(pipe, [u.path for u in corpora[target]])
            m = score_pipeline(pipe, corpora[target])
            done[cell] = {"ua": m["ua"], "wa": m["wa"], "macro_f1": m["macro_f1"], "n": m["n"],
                          "classes": m["classes"], "confusion": m["confusion"],
                          "seconds": round(time.perf_counter() - t0, 1)}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=1))
            print(f"{cell}: UA {m['ua']:.3f} ({done[cell]['seconds']:.0f} s)", flush=True)

    print(f"\n| variant | RAVDESS speech -> EmoDB UA | WA | EmoDB -> RAVDESS speech UA | WA | goal UA >= {100 * GOAL:.0f} |")
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        cells = [done.get(f"{name}|{s}->{t}") for s, t in DIRECTIONS]
        figures = " | ".join(f"{100 * c['ua']:.1f} | {100 * c['wa']:.1f}" if c else "- | -" for c in cells)
        met = [c is not None and c["ua"] >= GOAL for c in cells]
        verdict = "met both ways" if all(met) else "met one way" if any(met) else "NOT met"
        print(f"| {VARIANTS[name][0]} | {figures} | {verdict} |")


if __name__ == "__main__":
    main()
