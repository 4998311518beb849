"""Train the model that ships inside voxemo (voxemo/assets/voxemo_net.*).

    .venv/bin/python scripts/train_bundled.py [--data ../shared/data] [--out voxemo/assets/voxemo_net] [--force]

voxemo_net with its default settings on RAVDESS speech and song (8 emotions), every actor but 23 and
24: those two are held out of training and of model selection, and the example clips in examples/
come from them, so the demo is honest. Two further actors (drawn gender-balanced from the training
actors) are the validation speakers for early stopping. At the end the model is scored on actors 23
and 24 (speech and song separately) and those figures are written into the pipeline's JSON.
The weights derive from RAVDESS and carry its licence: CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from voxemo.experiment import Experiment, load_corpora, score_pipeline, train_pipeline

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = {"ravdess:23", "ravdess:24"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "voxemo" / "assets" / "voxemo_net" / "voxemo_net")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="overwrite an existing bundled model")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    manifest = load_corpora([str(args.data / "ravdess_speech"), str(args.data / "ravdess_song")])
    train = [u for u in manifest if u.speaker not in HELD_OUT]
    test = [u for u in manifest if u.speaker in HELD_OUT]
    exp = Experiment(model="voxemo_net", train={"epochs": args.epochs} if args.epochs else {})
    pipe, history, val = train_pipeline(
        train, exp, on_epoch=lambda r: print(f"epoch {r['epoch'] + 1}: loss {r['train_loss']:.3f} val UA {r['val_ua']:.3f}", flush=True))
    print(f"best epoch {history.best_epoch + 1}, validation actors {pipe.meta['validation_speakers']}: UA {val['ua']:.3f}")
    tests = {}
    for channel in ("speech", "song"):
        m = score_pipeline(pipe, [u for u in test if u.channel == channel])
        tests[channel] = {"ua": m["ua"], "wa": m["wa"], "macro_f1": m["macro_f1"], "classes": m["classes"], "n": m["n"]}
        print(f"held-out actors 23 and 24, {channel}: UA {m['ua']:.3f} WA {m['wa']:.3f} macro-F1 {m['macro_f1']:.3f} "
              f"({m['n']} clips, {len(m['classes'])} classes)")
    pipe.meta.update(
        test_speakers=sorted(HELD_OUT),
        test_metrics=tests,
        test_protocol="speaker-independent: actors 23 and 24 held out of training and model selection",
        licence="CC BY-NC-SA 4.0 (derived from RAVDESS, Livingstone & Russo 2018)",
        trained_by="scripts/train_bundled.py",
    )
    w, j = pipe.save(args.out, overwrite=args.force)
    print(f"wrote {w} ({w.stat().st_size / 1e6:.1f} MB) and {j.name} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
