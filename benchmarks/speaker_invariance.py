"""Can a single clip be freed of its speaker? Two classic answers, probed across corpora on cached statistics.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speaker_invariance.py [--data DIR] [--seeds 3]
        [--variants plain,nap5,nap20,adv0.3,adv1]

Per-speaker normalisation lifts cross-corpus UA by 10-26 points (RESULTS.md, "Across corpora") but
needs a speaker's clips together; on single clips the goal (UA >= 65 both ways) stays far off. Two
standard ways to take the speaker out of one clip's features, both learned on the training corpus
only:
- nuisance attribute projection (NAP; Solomonoff et al. 2005, from speaker and language recognition):
  per layer and statistic, the top k directions of within-emotion between-speaker variation
  (each speaker's mean per emotion minus the emotion's mean over speakers) are projected out of
  every clip's vector, training and scored clips alike: a fixed linear map, a single clip needs nothing
  else;
- a speaker adversary (domain-adversarial training, Ganin et al. 2016): a second classifier tells the
  training speakers apart from the head's hidden layer through a gradient reversal of weight lambda,
  so the hidden layer learns to carry emotion and not who speaks.

Setting: the frozen Whisper base statistics that `voxemo cv` caches (layers 0-4, the default
model's), standardised over the training corpus, each layer normalised per clip over D as in
`encoder_head`; a head like `encoder_head` (learned layer weights, MLP 256, AdamW 1e-3, weight decay
0.01, cosine over 60 epochs, label smoothing 0.1; no mixup) trained on every speaker of one corpus
with no validation choice (the mean of the last 20 epochs' weights, as `train.average_last`), scored
on the whole other corpus with predictions restricted to the six shared emotions (neutral, happy,
sad, angry, fearful, disgust; chance 1/6). Single clips, both directions, UA mean ± std over seeds
(initialisation and batch order). The head is written here and not registered: this asks whether
either idea is worth building into one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxemo.corpora import scan
from voxemo.embeddings import embed_corpus
from voxemo.evaluate import classification_metrics
from voxemo.experiment import Experiment

REPO = Path(__file__).resolve().parents[1]
SHARED = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
LAYERS = [0, 1, 2, 3, 4]
DIRECTIONS = (("ravdess_speech", "emodb"), ("emodb", "ravdess_speech"))
VARIANTS = {  # name -> (what it is, NAP directions k, adversary weight lambda)
    "plain": ("the head alone", 0, 0.0),
    "nap5": ("NAP, 5 speaker directions out", 5, 0.0),
    "nap20": ("NAP, 20 speaker directions out", 20, 0.0),
    "adv0.3": ("speaker adversary, lambda 0.3", 0, 0.3),
    "adv1": ("speaker adversary, lambda 1", 0, 1.0),
}
EPOCHS, AVERAGE_LAST, BATCH = 60, 20, 32


def corpus(data: Path, name: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Cached statistics of a corpus's clips (B, L', 2, D) as `voxemo cv` has them, emotions, speakers."""
    utts = list(scan(data / name))
    stats, skipped = embed_corpus(utts, Experiment(model="encoder_head").audio)
    if skipped:
        raise SystemExit(f"{len(skipped)} clips of {name} could not be embedded, e.g. {skipped[0]}")
    return stats[:, LAYERS], [u.emotion for u in utts], [u.speaker for u in utts]


def per_clip(x: np.ndarray) -> np.ndarray:
    """Each layer's mean and std vector standardised over D within the clip (encoder_head's LayerNorm)."""
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def nap_directions(z: np.ndarray, emotions: list[str], speakers: list[str], k: int) -> np.ndarray:
    """(B, L, 2, D) -> (L, 2, k, D): per layer and statistic, the top k right singular vectors of the
    speakers' per-emotion means minus each emotion's mean: how speakers differ, emotion held fixed."""
    emo, spk = np.asarray(emotions), np.asarray(speakers)
    out = np.zeros(z.shape[1:3] + (k, z.shape[-1]), np.float32)
    for layer in range(z.shape[1]):
        for stat in range(z.shape[2]):
            v = z[:, layer, stat]
            rows = []
            for e in np.unique(emo):
                centre = v[emo == e].mean(0)
                rows += [v[(emo == e) & (spk == s)].mean(0) - centre for s in np.unique(spk[emo == e])]
            out[layer, stat] = np.linalg.svd(np.stack(rows), full_matrices=False)[2][:k]
    return out


def project_out(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each clip's vector (B, L, 2, D) less its part in the directions p (L, 2, k, D)."""
    return z - np.einsum("blsk,lskd->blsd", np.einsum("blsd,lskd->blsk", z, p), p)


class Reverse(torch.autograd.Function):
    """Identity forward; the gradient times -lambda backward (gradient reversal)."""

    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


class Head(nn.Module):
    """(B, L, 2, D) -> (emotion logits (B, K), speaker logits (B, S)): layer weights, MLP; the speaker
    classifier reads the hidden layer through the gradient reversal."""

    def __init__(self, n_layers: int, width: int, n_classes: int, n_speakers: int):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.body = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * width, 256), nn.GELU())
        self.emotion = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, n_classes))
        self.speaker = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, n_speakers))

    def forward(self, x: torch.Tensor, lam: float = 0.0):
        h = self.body(torch.einsum("blsd,l->bsd", x, self.layer_logits.softmax(0)).flatten(1))
        return self.emotion(h), self.speaker(Reverse.apply(h, lam))


def cell(source, target, k: int, lam: float, seed: int) -> float:
    """UA over the shared emotions on the target corpus, single clips."""
    xs, ys, ss = source
    xt, yt, _ = target
    mu, sd = xs.mean(0), xs.std(0) + 1e-5
    zs, zt = per_clip((xs - mu) / sd), per_clip((xt - mu) / sd)
    if k:
        p = nap_directions(zs, ys, ss, k)
        zs, zt = project_out(zs, p), project_out(zt, p)
    classes, voices = sorted(set(ys)), sorted(set(ss))
    y = torch.tensor([classes.index(e) for e in ys])
    s = torch.tensor([voices.index(v) for v in ss])
    x = torch.from_numpy(zs).float()
    torch.manual_seed(seed)
    order = np.random.default_rng(seed)
    model = Head(x.shape[1], x.shape[-1], len(classes), len(voices))
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    kept = None
    for epoch in range(EPOCHS):
        model.train()
        for b in torch.from_numpy(order.permutation(len(y))).split(BATCH):
            emotion, speaker = model(x[b], lam)
            loss = nn.functional.cross_entropy(emotion, y[b], label_smoothing=0.1)
            loss = loss + nn.functional.cross_entropy(speaker, s[b])  # reaches the body only through the reversal
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
        if epoch >= EPOCHS - AVERAGE_LAST:
            w = {n: t.detach().clone() / AVERAGE_LAST for n, t in model.state_dict().items()}
            kept = w if kept is None else {n: kept[n] + w[n] for n in w}
    model.load_state_dict(kept)
    model.eval()
    scored = [i for i, e in enumerate(yt) if e in SHARED]
    shared = [c for c in classes if c in SHARED]
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(zt[scored]).float())
    pred = logits[:, [classes.index(c) for c in shared]].argmax(1).numpy()
    return classification_metrics(np.array([shared.index(yt[i]) for i in scored]), pred, shared)["ua"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    corpora = {name: corpus(args.data, name) for name in ("ravdess_speech", "emodb")}
    print(f"single clips, UA % over the 6 shared emotions, mean ± std over {args.seeds} seeds; goal 65 both ways")
    print("| variant | RAVDESS speech -> EmoDB | EmoDB -> RAVDESS speech | mean | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        what, k, lam = VARIANTS[name]
        t0 = time.perf_counter()
        uas = [[cell(corpora[a], corpora[b], k, lam, seed) for seed in range(args.seeds)] for a, b in DIRECTIONS]
        cells = " | ".join(f"{100 * np.mean(u):.1f} ± {100 * np.std(u):.1f}" for u in uas)
        print(f"| {what} | {cells} | {100 * np.mean(uas):.1f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
