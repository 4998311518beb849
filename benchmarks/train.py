"""Training speed of every registered model on RAVDESS speech, and one voxemo_net fold end to end.

    .venv/bin/python benchmarks/train.py [--data DIR] [--steps 5] [--skip-fold] [--models a,b] [--profile]

1. For each model: its own front-end and training settings, on batches of real 3 s clips (offset
   0.5 s); times `--steps` training steps after one warm-up step and prints the median seconds per
   step (robust to other jobs on the cores), clips/s and the seconds one epoch of a 6-fold
   speaker-independent training part would take (1440 clips less a test fold of 240 and 2
   validation actors: 1080 clips; for per-window models each clip is several windows, counted as
   one clip), side by side for the two paths of one run (issue 14):
   "old": features from the waveforms in every batch, the model computed as before issue 14 (default
   memory layout, ReLU before MaxPool in the td_cnn blocks, nn.Dropout; `as_before`), with glibc's
   malloc as it comes: every model's old path is timed first, then the new paths;
   "new": features computed once per run (`train.fit` when no augmentation changes the waveforms;
   their one-off cost, for 1080 clips, in its own column), the model as it is now, and large freed
   blocks kept for reuse as `train.fit` sets it (`train.keep_freed_memory`).
   A model whose augmentation changes the waveforms per epoch keeps the per-batch features (marked).
   "floor": the fewest seconds a step's arithmetic can take on this core, whatever the code: the
   multiply-adds of its matrix products and convolutions, forward and backward (counted by torch's
   FlopCounterMode with oneDNN off, so an LSTM shows as its matrix products), at the float32 GEMM
   rate measured here on large square matrices, the most this core does. Everything else (BatchNorm,
   pooling, masks, the optimiser) is left out, so a real step is slower. Where the floor is above a
   third of the old step, "3x" cannot be reached without changing the math; the last column says so.
2. One actor-disjoint fold (fold 1 of 6, 4 test actors, 2 validation actors) of voxemo_net trained
   with its defaults: wall time, best epoch, time to the best epoch, test UA/WA (8 classes).
   Targets on 2 cores: one fold <= 180 s; a full 6-fold CV <= 20 minutes (6 x the fold time).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from voxemo.augment import Augmenter
from voxemo.cache import WaveformCache
from voxemo.corpora import scan
from voxemo.audio import PAPER_AUDIO
from voxemo.experiment import Experiment, build, cross_validate
from voxemo.models import Dropout, list_models
from voxemo.splits import labels_for
from voxemo.train import keep_freed_memory, make_optimizer, soft_cross_entropy

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ravdess_speech"
TRAIN_CLIPS = 1080
FOLD_TARGET_S = 180
CV_TARGET_S = 20 * 60


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    """The model computed as before issue 14, same weights: default memory layout, in td_cnn blocks
    ReLU before MaxPool, and nn.Dropout's own masks (tests/test_models.py checks the numbers agree)."""
    model = model.to(memory_format=torch.contiguous_format)
    for block in getattr(model, "cnn", []):
        block[2], block[3] = block[3], block[2]
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is Dropout:
                setattr(parent, name, torch.nn.Dropout(child.p))
    return model


def gemm_rate(n: int = 1024, reps: int = 20) -> float:
    """Float32 multiply-add rate (FLOP/s, 2 per multiply-add) of an n x n matrix product on the current
    threads: the best of `reps`, the closest this core comes to its peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def time_model(name: str, waves: torch.Tensor, labels: torch.Tensor, classes: list[str], steps: int,
               old: bool = False, profile: bool = False) -> tuple[float, int, float | None, float]:
    """(median seconds a step, batch size, seconds to compute the features of 1080 clips once, or None
    when they are computed per batch, FLOPs of one step's matrix products and convolutions)."""
    exp = Experiment(model=name)
    cfg = exp.train_config()
    pipe = build(exp, classes)
    aug = Augmenter(cfg.augment)
    once = not old and not aug.changes_waves()
    if old:
        pipe.model = as_before(pipe.model)
    t = time.perf_counter()
    with torch.no_grad():
        feats_all = torch.cat([pipe.frontend(waves[i : i + 128]) for i in range(0, waves.shape[0], 128)])
    pipe.normalizer.fit(feats_all)
    feats_all = pipe.normalizer(feats_all)
    setup = (time.perf_counter() - t) * TRAIN_CLIPS / waves.shape[0] if once else None
    opt = make_optimizer(pipe.model.parameters(), cfg)
    gen = torch.Generator().manual_seed(0)
    bs = cfg.batch_size
    pipe.train()

    def step(i, count: FlopCounterMode | None = None):
        idx = torch.arange(i * bs, (i + 1) * bs) % waves.shape[0]
        y = labels[idx]
        if once:
            feats = aug.augment_features(feats_all[idx], gen)
        else:
            feats = aug.augment_features(pipe.features(aug.augment_waves(waves[idx], gen)), gen)
        with count or contextlib.nullcontext():
            logits = pipe.logits(feats)
            target = torch.nn.functional.one_hot(y, len(classes)).float()
            if pipe.per_window:
                target = target[:, None].expand(-1, logits.shape[1], -1)
            loss = soft_cross_entropy(logits, target, None, 0.0)
            opt.zero_grad()
            loss.backward()
        opt.step()

    step(0)  # warm-up, with the kernels the timed steps use
    times = []
    for i in range(1, steps + 1):
        t = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t)
    count = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's fused LSTM hides its products from the counter
        step(steps + 2, count)  # one more step, untimed, counted
    if profile:  # where one more step's time goes, by operator
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            step(steps + 1)
        print(f"{name}, new path, one step:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    return float(np.median(times)), bs, setup, count.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--skip-fold", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the machine's cores)")
    ap.add_argument("--profile", action="store_true", help="print the torch profiler's top operators of a new-path step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    utts = scan(args.data)
    y, classes = labels_for(utts)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(utts), 256, replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        waves = torch.from_numpy(np.stack([PAPER_AUDIO.crop(x) for x in WaveformCache(PAPER_AUDIO, tmp).load_many([utts[i].path for i in pick])]))
    labels = torch.as_tensor(y[pick])
    names = args.models.split(",") if args.models else list_models()
    rate = gemm_rate()
    print(f"float32 GEMM rate, 1024 x 1024, {torch.get_num_threads()} thread(s): {rate / 1e9:.1f} GFLOP/s")
    print(f"\n{'model':22s} {'batch':>5s} {'s/step old':>10s} {'s/step new':>10s} {'clips/s new':>11s} "
          f"{'s/epoch old':>11s} {'s/epoch new':>11s} {'speed-up':>8s} {'features once (s)':>24s} "
          f"{'GFLOP/step':>10s} {'floor s/step':>12s}  3x within the floor")
    # Every model's old path first, with glibc's malloc as it comes; then the allocator setting
    # `train.fit` makes (`keep_freed_memory`, process-wide) and every model's new path.
    olds = {name: time_model(name, waves, labels, classes, args.steps, old=True) for name in names}
    keep_freed_memory()
    for name in names:
        old, bs, _, _ = olds[name]
        new, _, setup, flops = time_model(name, waves, labels, classes, args.steps, profile=args.profile)
        n = math.ceil(TRAIN_CLIPS / bs)
        floor = flops / rate
        verdict = (f"yes ({old / 3:.3f} s >= floor)" if floor <= old / 3
                   else f"no: 3x needs {old / 3:.3f} s, below the floor")
        print(f"{name:22s} {bs:5d} {old:10.3f} {new:10.3f} {bs / new:11.1f} {n * old:11.1f} {n * new:11.1f} "
              f"{old / new:7.1f}x {'per batch (waves change)' if setup is None else f'{setup:24.1f}'} "
              f"{flops / 1e9:10.1f} {floor:12.3f}  {verdict}", flush=True)
    if args.skip_fold:
        return
    print("\nvoxemo_net, fold 1 of 6 (speaker-independent, 8 classes), its default training:")
    epoch_times = []
    t0 = time.perf_counter()
    last = [t0]

    def on_epoch(r):
        now = time.perf_counter()
        epoch_times.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as run:
        m = cross_validate(utts, Experiment(model="voxemo_net", max_folds=1), Path(run), on_epoch=on_epoch)
    wall = time.perf_counter() - t0
    f = m["folds"][0]
    to_best = sum(epoch_times[: f["best_epoch"] + 1])
    print(f"  wall {wall:.1f} s (decoding included), {len(epoch_times)} epochs, {np.mean(epoch_times):.1f} s/epoch")
    print(f"  best epoch {f['best_epoch'] + 1}, reached after {to_best:.1f} s of training")
    print(f"  test UA {f['ua']:.3f}, WA {f['wa']:.3f}, macro-F1 {f['macro_f1']:.3f} (actors {f['fold']})")
    print(f"  one fold {wall:.0f} s vs target {FOLD_TARGET_S} s: {'met' if wall <= FOLD_TARGET_S else 'NOT met'}")
    print(f"  6 folds ~ {6 * wall / 60:.1f} min vs target {CV_TARGET_S // 60} min: {'met' if 6 * wall <= CV_TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
