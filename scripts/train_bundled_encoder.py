"""Train voxemo's default model: a head on frozen Whisper base statistics, on every shared corpus.

    .venv/bin/python scripts/train_bundled_encoder.py [--data ../shared/data] [--loco [--loco-seeds 3]
        [--candidate NAME ...]] [--out PATH] [--force]

Data: RAVDESS speech and song and EmoDB, with one label set across corpora, the seven emotions most
acted corpora share (LABELS): RAVDESS's "calm" is merged into "neutral", EmoDB's "boredom" is left
out (no other corpus has it). Speakers of every corpus are held out of training and of model
selection (TEST: RAVDESS actors 23 and 24, whose clips are in examples/, and EmoDB speakers 03 and
08); VALIDATION speakers of every corpus choose the epoch and calibrate the probabilities
(temperature scaling; the calibration error before and after is printed and saved).

Robustness: each training and validation clip is embedded twice, as it is and as a degraded copy
(`augment.degrade`: noise at 5-30 dB SNR, sometimes a telephone or low-pass band and reverberation),
and every clip is levelled to one loudness before the encoder, so gain does not move the input. A
candidate may also train on voice copies of each training clip (`augment.change_speed`, speeds 0.9
and 1.1: other voices); validation clips are never voice-copied. A candidate may change the training
(`train`: TrainConfig fields), e.g. weigh the loss by inverse class frequency: across the three
corpora the merged "neutral" has several times the clips of "surprised", which only RAVDESS speech has.

`--loco` first scores the candidate heads (CANDIDATES) by leaving one shared corpus out: trained on
RAVDESS, scored on EmoDB, and trained on EmoDB, scored on RAVDESS speech, single clips, predictions
restricted to the shared classes, TEST's speakers left out of both sides, each candidate run
`--loco-seeds` times (other validation speakers, initialisation and batch order: the epoch two
validation speakers choose moves these figures by several points); the candidate with the best mean
UA there is trained as the
default (without --loco, the first candidate). The held-out speakers' figures go into the pipeline's
JSON (`test_metrics`) and the README. The weights are a head trained on RAVDESS (CC BY-NC-SA 4.0)
and EmoDB over Whisper (MIT): the pipeline carries those terms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from voxemo.audio import AudioSettings, load_audio
from voxemo.corpora import scan
from voxemo.embeddings import embed_corpus
from voxemo.evaluate import classification_metrics, expected_calibration_error, fit_temperature
from voxemo.experiment import Experiment, build, load_clips
from voxemo.train import feature_batches, fit

REPO = Path(__file__).resolve().parents[1]
LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MERGE = {"calm": "neutral"}
TEST = {"ravdess:23", "ravdess:24", "emodb:03", "emodb:08"}
VALIDATION = {"ravdess:03", "ravdess:04", "emodb:10", "emodb:13"}


class Candidate(NamedTuple):
    """A head weighed by leaving a corpus out: its model, hyper-parameters, voice copies of each
    training clip and overrides of its training defaults."""

    model: str
    overrides: dict
    voices: int = 0
    train: dict = {}


LAYERS_04 = {"layers": [0, 1, 2, 3, 4]}
CANDIDATES = {
    "all layers": Candidate("encoder_head", {}),
    "layers 0-4": Candidate("encoder_head", LAYERS_04),
    "layers 1-5, wider": Candidate("encoder_head", {"layers": [1, 2, 3, 4, 5], "hidden": 512, "dropout": 0.5}),
    "layers 0-4, ensemble of 5": Candidate("encoder_ensemble", LAYERS_04),
    "layers 0-4, two voice copies": Candidate("encoder_head", LAYERS_04, voices=2),
    "layers 0-4, class-weighted loss": Candidate("encoder_head", LAYERS_04, train={"class_weights": True}),
    "layers 0-4, mean of the last 20 epochs": Candidate("encoder_head", LAYERS_04, train={"average_last": 20}),
    "layers 0-4, ensemble of 5, mean of the last 20 epochs": Candidate("encoder_ensemble", LAYERS_04,
                                                                       train={"average_last": 20}),
    # the reference probe (a logistic regression to its optimum): the best single-clip reader across
    # corpora in benchmarks/cross_corpus.py one way
    "linear probe, layers 0-4": Candidate("encoder_probe", LAYERS_04),
    "linear probe, all layers": Candidate("encoder_probe", {}),
}
GAINS_DB = (0, -10, -20, -30)
LOCO_SEEDS = 3  # runs per candidate when leaving a corpus out: one run moves by several points


def corpus(data: Path) -> list:
    """Every clip of the three corpora with a label in LABELS (calm merged into neutral)."""
    utts = [u for name in ("ravdess_speech", "ravdess_song", "emodb") for u in scan(data / name)]
    utts = [dataclasses.replace(u, emotion=MERGE.get(u.emotion, u.emotion)) for u in utts]
    return [u for u in utts if u.emotion in LABELS]


def train_head(candidate: Candidate, x: torch.Tensor, y: torch.Tensor, val: tuple, labels, seed: int = 0):
    exp = Experiment(model=candidate.model, model_overrides=candidate.overrides, train=candidate.train, seed=seed)
    pipe = build(exp, list(labels))
    fit(pipe, (x, y), val, exp.train_config(), precomputed=True)
    return pipe


def logits_of(pipe, x: torch.Tensor) -> np.ndarray:
    pipe.eval()
    with torch.inference_mode():
        return torch.cat([pipe.logits(f) for f in feature_batches(pipe, x, 256, precomputed=True)]).numpy()


def restricted_ua(logits: np.ndarray, y: np.ndarray, labels, shared) -> float:
    cols = [labels.index(c) for c in shared]
    pred = np.array(cols)[logits[:, cols].argmax(1)]
    keep = np.isin(y, cols)
    return classification_metrics(y[keep], pred[keep], cols)["ua"]


def training_rows(candidate: Candidate, rows: np.ndarray, x0, copies, y) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips of `rows`, their degraded copy and as many of their voice copies as the candidate
    takes (copies = [degraded, voice 1, voice 2, ...]), with their labels."""
    kept = [x0] + copies[: 1 + candidate.voices]
    return torch.cat([x[rows] for x in kept]), torch.from_numpy(np.tile(y[rows], len(kept)))


def validation_speakers(speakers: np.ndarray, train_mask: np.ndarray, seed: int) -> np.ndarray:
    """Which training clips validate (`speakers`: each clip's speaker): VALIDATION's speakers for seed 0,
    else two of the training clips' speakers drawn (seeded)."""
    if seed == 0:
        return train_mask & np.isin(speakers, sorted(VALIDATION))
    pool = sorted(set(speakers[train_mask].tolist()))
    drawn = np.random.default_rng(seed).choice(pool, size=2, replace=False)
    return train_mask & np.isin(speakers, drawn)


def leave_one_corpus_out(utts, x0, copies, y, seeds: int = LOCO_SEEDS, names=tuple(CANDIDATES)) -> dict:
    """UA of each candidate trained on one corpus and scored on the other (shared classes, single clips),
    averaged over `seeds` runs: each seed draws other validation speakers, initialisation and batch order.
    Which epoch two validation speakers choose moves these figures by several points (RESULTS.md), so a
    choice between candidates needs more than one run."""
    ravdess = np.array([u.corpus == "ravdess" for u in utts])
    speech = np.array([u.channel == "speech" for u in utts])
    speakers = np.array([u.speaker for u in utts])
    open_ = ~np.isin(speakers, sorted(TEST))  # TEST's speakers stay out of the choice too
    table = {}
    for name in names:
        candidate, runs = CANDIDATES[name], []
        for seed in range(seeds):
            row = {}
            for train_mask, test_mask, label in ((ravdess & open_, ~ravdess & open_, "RAVDESS -> EmoDB"),
                                                 (~ravdess & open_, ravdess & speech & open_, "EmoDB -> RAVDESS speech")):
                val = validation_speakers(speakers, train_mask, seed)
                tr = train_mask & ~val
                shared = sorted({LABELS[k] for k in y[tr].tolist()} & {LABELS[k] for k in y[test_mask].tolist()},
                                key=LABELS.index)
                xt, yt = training_rows(candidate, tr, x0, copies, y)
                pipe = train_head(candidate, xt, yt, (x0[val], torch.from_numpy(y[val])), LABELS, seed=seed)
                row[label] = restricted_ua(logits_of(pipe, x0[test_mask]), y[test_mask], list(LABELS), shared)
            row["mean"] = float(np.mean(list(row.values())))
            runs.append(row)
            print(f"{name:32s} seed {seed} " + "  ".join(f"{k} UA {v:.3f}" for k, v in row.items()), flush=True)
        table[name] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        table[name]["std of the mean"] = float(np.std([r["mean"] for r in runs]))
        table[name]["runs"] = runs
        print(f"{name:32s} over {seeds} seeds: " + "  ".join(f"{k} UA {table[name][k]:.3f}" for k in runs[0])
              + f" (± {table[name]['std of the mean']:.3f})", flush=True)
    return table


def gain_check(pipe) -> dict:
    """Labels of the example clips played 0 to 30 dB quieter: how many keep the 0 dB label."""
    from voxemo.predict import Predictor

    predictor = Predictor(pipe)
    files = sorted((REPO / "examples").glob("*.flac"))
    labels = {g: [predictor.predict(load_audio(f, 16000) * 10 ** (g / 20), sr=16000)["label"] for f in files]
              for g in GAINS_DB}
    same = {g: sum(a == b for a, b in zip(labels[0], labels[g])) for g in GAINS_DB}
    return {"files": len(files), "same_label_as_0_dB": same}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "voxemo" / "assets" / "voxemo_whisper" / "voxemo_whisper")
    ap.add_argument("--loco", action="store_true", help="choose the head by leaving one corpus out first")
    ap.add_argument("--loco-seeds", type=int, default=LOCO_SEEDS,
                    help="runs per candidate when leaving a corpus out (validation speakers, initialisation)")
    ap.add_argument("--candidate", action="append", default=None,
                    help="with --loco, weigh only this one of CANDIDATES (repeat for more; default all)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing bundled model")
    args = ap.parse_args()
    t0 = time.perf_counter()
    utts = corpus(args.data)
    y = np.array([LABELS.index(u.emotion) for u in utts])
    x0 = torch.from_numpy(embed_corpus(utts, AudioSettings())[0])
    voices = max(c.voices for c in CANDIDATES.values())
    copies = [torch.from_numpy(embed_corpus(utts, AudioSettings(), copy=1)[0])]
    copies += [torch.from_numpy(embed_corpus(utts, AudioSettings(), voice=k)[0]) for k in range(1, voices + 1)]
    print(f"{len(utts)} clips embedded (and one degraded copy and {voices} voice copies of each) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    choice, loco = next(iter(CANDIDATES)), None
    if args.loco:
        names = args.candidate or list(CANDIDATES)
        unknown = sorted(set(names) - set(CANDIDATES))
        if unknown:
            raise SystemExit(f"unknown candidates {unknown}; known: {list(CANDIDATES)}")
        loco = leave_one_corpus_out(utts, x0, copies, y, args.loco_seeds, names)
        choice = max(loco, key=lambda k: loco[k]["mean"])
        print(f"chosen by leaving a corpus out: {choice}")

    speakers = np.array([u.speaker for u in utts])
    test, val = np.isin(speakers, sorted(TEST)), np.isin(speakers, sorted(VALIDATION))
    tr = ~test & ~val
    x_train, y_train = training_rows(CANDIDATES[choice], tr, x0, copies, y)
    x_val, y_val = torch.cat([x0[val], copies[0][val]]), np.concatenate([y[val], y[val]])
    pipe = train_head(CANDIDATES[choice], x_train, y_train, (x_val, torch.from_numpy(y_val)), LABELS)

    val_logits = logits_of(pipe, x_val)
    t = fit_temperature(val_logits, y_val)
    soft = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)  # noqa: E731
    calibration = {"temperature": round(t, 4), "ece_before": expected_calibration_error(soft(val_logits), y_val),
                   "ece_after": expected_calibration_error(soft(val_logits / t), y_val),
                   "on": "validation speakers' clips and their degraded copies"}
    pipe.temperature = t
    print(f"temperature {t:.3f}: validation ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}")

    tests = {}
    test_utts = [u for u, keep in zip(utts, test) if keep]
    probs = pipe.hear(load_clips(test_utts, pipe.audio))  # through the pipeline, as `voxemo predict`
    yt = y[test]
    for part in ("speech", "song", "emodb"):
        mask = np.array([(u.corpus == "emodb") if part == "emodb" else (u.corpus == "ravdess" and u.channel == part)
                         for u in test_utts])
        present = sorted(set(yt[mask].tolist()))
        m = classification_metrics(yt[mask], probs[mask].argmax(1), present)
        tests[part] = {"ua": m["ua"], "wa": m["wa"], "macro_f1": m["macro_f1"], "n": int(mask.sum()),
                       "classes": [LABELS[k] for k in present],
                       "ece": expected_calibration_error(probs[mask], yt[mask])}
        print(f"held-out {part}: UA {m['ua']:.3f} WA {m['wa']:.3f} macro-F1 {m['macro_f1']:.3f} "
              f"({tests[part]['n']} clips, {len(present)} classes), ECE {tests[part]['ece']:.3f}", flush=True)
    gains = gain_check(pipe)
    print(f"examples at 0/-10/-20/-30 dB, same label as at 0 dB: {gains['same_label_as_0_dB']} of {gains['files']}")

    pipe.meta.update(
        corpora=["ravdess", "emodb"], labels_note="calm merged into neutral; EmoDB's boredom left out",
        head=choice, leave_one_corpus_out=loco, calibration=calibration, gain_check=gains,
        validation_speakers=sorted(VALIDATION), test_speakers=sorted(TEST), test_metrics=tests,
        test_protocol="speaker-independent: RAVDESS actors 23, 24 and EmoDB speakers 03, 08 held out of training "
                      "and model selection",
        licence="head: CC BY-NC-SA 4.0 (trained on RAVDESS, Livingstone & Russo 2018; and EmoDB, Burkhardt et al. "
                "2005); encoder: OpenAI Whisper base, MIT",
        trained_by="scripts/train_bundled_encoder.py" + (" --loco" if args.loco else ""),
    )
    w, j = pipe.save(args.out, overwrite=args.force)
    print(f"wrote {w} ({w.stat().st_size / 1e6:.1f} MB) and {j.name} in {time.perf_counter() - t0:.0f} s")
    print(json.dumps(tests))


if __name__ == "__main__":
    main()
