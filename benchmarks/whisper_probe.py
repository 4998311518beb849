"""A linear probe per Whisper layer on the cached embeddings: speaker-independent UA per layer.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/whisper_probe.py [--data DIR] [--cache-root DIR] [--C 1.0] [--plot OUT.png]

Run `whisper_embed.py` first (clips missing from the cache are computed, slowly). For each layer of
the encoder (0 = conv stem + positions, 1-5 after blocks 1-5, 6 = the encoder output after the final
LayerNorm) the clip's features are that layer's mean and std over frames (2 x 512); "2-6" concatenates
layers 2 to 6 (5 x 1024), "all" every layer (7 x 1024, what the registered `encoder_probe` reads).
Classifier: StandardScaler + multinomial LogisticRegression (C fixed by --C, not tuned), fitted on
each fold's training and validation speakers together, scored on its
test speakers. Protocols (speaker-independent, `splits.make_folds`):
- RAVDESS speech, 8 emotions, "speaker-kfold" with 6 folds (4 test actors each, gender-balanced);
- RAVDESS song, 6 emotions, "speaker-kfold" with 6 folds;
- EmoDB, 7 emotions, "loso" (10 folds, one test speaker each).
`--plot` writes the pooled UA per layer of every task as a PNG.
Metric: UA (mean per-class recall) over all test clips pooled (each clip is tested once), and the
mean over folds. The floors given with the issue (measured elsewhere) are printed alongside.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from voxemo.audio import AudioSettings
from voxemo.corpora import scan
from voxemo.embeddings import embed_corpus
from voxemo.evaluate import aggregate, classification_metrics
from voxemo.splits import labels_for, make_folds

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
TASKS = (  # name, folder, corpus, protocol, folds
    ("RAVDESS speech, 8 classes, speaker 6-fold", "ravdess_speech", "ravdess", "speaker-kfold", 6),
    ("RAVDESS song, 6 classes, speaker 6-fold", "ravdess_song", "ravdess", "speaker-kfold", 6),
    ("EmoDB, 7 classes, LOSO", "emodb", "emodb", "loso", None),
)
CONCAT = (2, 3, 4, 5, 6)  # the layers of the "2-6" row
FLOORS = {  # UA measured by someone else, for comparison: {task folder: {row: UA}}
    "ravdess_speech": {"6": 0.70, "4": 0.73, "2-6": 0.75},
    "ravdess_song": {"0": 0.76},
    "emodb": {"6": 0.79, "3": 0.91, "2-6": 0.92},
}


def probe(X: np.ndarray, y: np.ndarray, classes: list[str], folds, C: float) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    per_fold = []
    for fold in folds:
        train = np.concatenate([fold.train, fold.val])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(X[train], y[train])
        per_fold.append(classification_metrics(y[fold.test], clf.predict(X[fold.test]), classes))
    return aggregate(per_fold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the corpora (default: %(default)s)")
    ap.add_argument("--cache-root", type=Path, default=None, help="embedding cache root (default: the voxemo cache)")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression (default: %(default)s)")
    ap.add_argument("--plot", type=Path, default=None, help="write the UA per layer of every task to this PNG")
    args = ap.parse_args()
    curves = {}

    for title, folder, corpus, protocol, n_folds in TASKS:
        start = time.perf_counter()
        utts = list(scan(args.data / folder, corpus))
        E, skipped = embed_corpus(utts, AudioSettings(), cache_root=args.cache_root)  # (B, L + 1, 2, D)
        gone = {p.path for p in skipped}
        utts = [u for u in utts if u.path not in gone]
        y, classes = labels_for(utts)
        folds = make_folds(protocol, utts, y, folds=n_folds)
        E = E.reshape(len(E), E.shape[1], -1)  # (B, L + 1, 2 D): mean and std side by side
        rows = {str(layer): E[:, layer] for layer in range(E.shape[1])}
        rows["2-6"] = E[:, list(CONCAT)].reshape(len(E), -1)
        rows["all"] = E.reshape(len(E), -1)
        print(f"\n{title}: {len(utts)} clips ({len(skipped)} skipped), {len(folds)} folds, "
              f"classes {', '.join(classes)}; standardised logistic regression, C={args.C}")
        print(f"{'layer':>8}{'UA pooled':>11}{'UA fold mean':>14}{'(std)':>8}{'WA pooled':>11}{'floor UA':>10}")
        for name, X in rows.items():
            m = probe(X, y, classes, folds, args.C)
            if name.isdigit():
                curves.setdefault(title, []).append(m["pooled"]["ua"])
            floor = FLOORS[folder].get(name)
            print(f"{name:>8}{m['pooled']['ua']:>11.3f}{m['ua']['mean']:>14.3f}{m['ua']['std']:>8.3f}"
                  f"{m['pooled']['wa']:>11.3f}{'' if floor is None else f'{floor:.2f}':>10}")
        print(f"({time.perf_counter() - start:.0f} s)")
    if args.plot:
        plot(curves, args.plot)


def plot(curves: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), constrained_layout=True)
    for title, ua in curves.items():
        ax.plot(range(len(ua)), ua, marker="o", label=title)
    ax.set_xlabel("Whisper base layer (0 = conv stem, 6 = encoder output)")
    ax.set_ylabel("UA, speaker-independent")
    ax.set_title("Linear probe per layer (mean and std over frames)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
