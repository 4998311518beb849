"""Run directories: `config.json`, `metrics.json`, a readable `report.md`, and PNG plots.

`write_run` takes the metrics dict of a cross-validation run, shaped like this (the aggregate keys are
those of `evaluate.aggregate`; everything but protocol, classes and the three headline metrics is
optional):

    {
      "protocol": "speaker-kfold",             # one of splits.PROTOCOLS
      "speaker_independent": true,             # inferred from the protocol when missing
      "classes": ["neutral", "calm", ...],
      "ua": {"mean": 0.61, "std": 0.04, "folds": [0.58, ...]},   # likewise "wa", "macro_f1"
      "confusion": [[...], ...],               # summed over folds, rows true / columns predicted
      "per_class": {"neutral": {"precision", "recall", "f1", "support"}, ...},
      "folds": [{"name": "fold 1/6: test ravdess:02,...", "confusion": [[...]], ...}, ...],
    }

Where "confusion" is missing it is summed from the folds' own; where "per_class" is missing it is
computed from the confusion matrix. Numbers are shown as percentages with two decimals.

metrics.json is written last, so a directory holding one is a finished run: `write_run` refuses to
write into it again unless `overwrite=True`. Plotting uses matplotlib (Agg), imported when needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .evaluate import METRICS, per_class_from_confusion
from .splits import SPEAKER_INDEPENDENT

METRIC_NAMES = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1"}
PROTOCOL_NAMES = {
    "random": "random split",
    "speaker-kfold": "speaker k-fold",
    "loso": "leave one speaker out",
    "repeated-kfold": "repeated stratified k-fold",
}
CURVE_PANELS = (  # (title, [(history key, line style)])
    ("train loss", [("train_loss", "-")]),
    ("validation loss", [("val_loss", "-")]),
    ("train accuracy", [("train_acc", "-")]),
    ("validation UA (solid) / accuracy (dashed)", [("val_ua", "-"), ("val_acc", "--")]),
)


def _jsonable(obj):
    """json.dump's fallback: numpy scalars and arrays, paths."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def describe_protocol(metrics: dict) -> str:
    """"speaker-independent (speaker k-fold, 6 folds)", "... (speaker k-fold, 2 of 6 folds)" when
    fewer ran than the protocol has (`folds_total`), or "random split (speaker-dependent)"."""
    protocol = metrics.get("protocol", "unknown")
    independent = metrics.get("speaker_independent", SPEAKER_INDEPENDENT.get(protocol, False))
    name = PROTOCOL_NAMES.get(protocol, str(protocol))
    n = len(_metric(metrics, "ua")["folds"]) if "ua" in metrics else 0
    total = metrics.get("folds_total") or n
    folds = f", {n} of {total} folds" if total > n else f", {n} folds" if n > 1 else ""
    if independent:
        return f"speaker-independent ({name}{folds})"
    return f"{name} (speaker-dependent{folds})"


def _metric(metrics: dict, key: str) -> dict:
    """{"mean", "std", "folds"} of a headline metric; a bare number counts as one fold."""
    m = metrics[key]
    if isinstance(m, dict):
        return {"mean": float(m["mean"]), "std": float(m.get("std", 0.0)),
                "folds": [float(v) for v in m.get("folds", [m["mean"]])]}
    return {"mean": float(m), "std": 0.0, "folds": [float(m)]}


def _fold_names(metrics: dict, n: int) -> list[str]:
    details = metrics.get("folds")
    names = [d.get("name") if isinstance(d, dict) else None for d in details] if isinstance(details, list) else []
    names += [None] * (n - len(names))
    return [name or f"fold {i + 1}/{n}" for i, name in enumerate(names[:n])]


def _confusion(metrics: dict) -> np.ndarray | None:
    if "confusion" in metrics:
        return np.asarray(metrics["confusion"], dtype=np.int64)
    folds = [d["confusion"] for d in metrics.get("folds") or [] if isinstance(d, dict) and "confusion" in d]
    return np.sum([np.asarray(c, dtype=np.int64) for c in folds], axis=0) if folds else None


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _mean_std(m: dict) -> str:
    return f"{_pct(m['mean'])} ± {_pct(m['std'])}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _table(header: list[str], rows: list[list], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _report_md(title: str, metrics: dict, cm: np.ndarray | None, per_class: dict | None,
               pngs: dict[str, str]) -> str:
    from . import __version__

    classes = list(metrics["classes"])
    headline = {k: _metric(metrics, k) for k in METRICS if k in metrics}
    n = max(len(m["folds"]) for m in headline.values())
    lines = [
        f"# {title}",
        "",
        f"- Protocol: {describe_protocol(metrics)}",
        f"- Classes ({len(classes)}): {', '.join(classes)}",
        "- Metrics: UA = unweighted accuracy (mean per-class recall), WA = weighted accuracy (plain "
        "accuracy), macro-F1; in percent, mean ± std over folds (population std, ddof=0)",
        f"- Written {time.strftime('%Y-%m-%d %H:%M:%S')} by voxemo {__version__}; configuration in "
        "[config.json](config.json), all numbers in [metrics.json](metrics.json)",
        "",
        "## Results",
        "",
    ]
    keys = list(headline)
    rows = [["**mean ± std**"] + [_mean_std(headline[k]) for k in keys]]
    for i, name in enumerate(_fold_names(metrics, n)):
        rows.append([name] + [_pct(headline[k]["folds"][i]) if i < len(headline[k]["folds"]) else ""
                              for k in keys])
    lines += _table(["", *(f"{METRIC_NAMES[k]} (%)" for k in keys)], rows)
    kept = metrics.get("validation_at_best")
    if kept:
        lines += ["", f"Validation clips at the epoch each fold kept (chosen on them, so optimistic; what a paper "
                      f"reporting validation accuracy reports): WA {_mean_std(kept['wa'])}, UA {_mean_std(kept['ua'])}."]
    flagged = [(name, d["flags"]) for name, d in zip(_fold_names(metrics, n), metrics.get("folds") or [])
               if isinstance(d, dict) and d.get("flags")]
    if flagged:
        lines += ["", "## Collapsed folds", "",
                  "These folds' figures are not a trained model's: \"one class\" = at least 90 % of the test "
                  "predictions fall on one class; \"loss at chance\" = the training loss never fell below 97 % of "
                  "ln K, a uniform guess (`evaluate.collapse_flags`).", ""]
        lines += [f"- **{name}**: {', '.join(flags)}" for name, flags in flagged]
    if per_class:
        lines += ["", "## Per class" + (" (summed confusion over folds)" if n > 1 else ""), ""]
        rows = [[c, _pct(p["precision"]), _pct(p["recall"]), _pct(p["f1"]), p["support"]]
                for c, p in per_class.items()]
        lines += _table(["class", "precision (%)", "recall (%)", "F1 (%)", "support"], rows)
    if cm is not None:
        lines += ["", "## Confusion matrix", "",
                  "Rows: true class; columns: predicted class; counts" + (" summed over folds." if n > 1 else "."), ""]
        rows = [[f"**{c}**", *map(int, cm[i])] for i, c in enumerate(classes)]
        lines += _table(["true \\ predicted", *classes], rows)
    if pngs:
        lines += ["", "## Plots", ""]
        lines += [f"![{caption}]({name})" for name, caption in pngs.items()]
    return "\n".join(lines) + "\n"


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """The confusion matrix normalised by row (recall on the diagonal), each cell annotated with its
    percentage and count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    size = max(4.0, 0.8 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}%\n({int(cm[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# more folds than this and the curves plot draws each fold faintly in one colour, with the median
# over folds on top, instead of a colour and a legend entry per fold (tab10 has ten colours)
CURVE_FOLDS_NAMED = 10


def plot_curves(histories: list[dict], path: Path, fold_names: list[str] | None = None) -> bool:
    """Learning curves per epoch, one line per fold, in four panels (see CURVE_PANELS); keys a
    history lacks are skipped. False (and nothing written) when no history holds any curve."""
    fig = curves_figure(histories, fold_names)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def curves_figure(histories: list[dict], fold_names: list[str] | None = None):
    """plot_curves' figure (None when no history holds any curve). Up to CURVE_FOLDS_NAMED folds each
    get a colour and a legend entry; more (a 10-fold x 5 protocol has 50) are drawn faintly with
    their median per epoch on top, over the folds still training at that epoch: folds stop at
    different epochs, so late epochs' medians speak for the long-running folds only."""
    if not any(h.get(key) for h in histories for _, lines in CURVE_PANELS for key, _ in lines):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    colours = plt.get_cmap("tab10")
    named = len(histories) <= CURVE_FOLDS_NAMED
    legend: dict[int, Line2D] = {}  # fold -> a handle in its colour
    for ax, (title, lines) in zip(axes.flat, CURVE_PANELS):
        drawn = False
        for key, style in lines:
            curves = [(f, h[key]) for f, h in enumerate(histories) if h.get(key)]
            for f, ys in curves:
                epochs = range(1, len(ys) + 1)
                if named:
                    ax.plot(epochs, ys, style, color=colours(f % 10))
                    name = fold_names[f] if fold_names and f < len(fold_names) else f"fold {f + 1}"
                    legend.setdefault(f, Line2D([], [], color=colours(f % 10), label=name.split(":")[0]))
                else:
                    ax.plot(epochs, ys, style, color="tab:blue", alpha=0.25, linewidth=0.8)
            if curves and not named:
                longest = max(len(ys) for _, ys in curves)
                median = [np.median([ys[e] for _, ys in curves if len(ys) > e]) for e in range(longest)]
                ax.plot(range(1, longest + 1), median, style, color="black", linewidth=1.8)
            drawn = drawn or bool(curves)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    if named:
        handles = [legend[f] for f in sorted(legend)]
    else:
        handles = [Line2D([], [], color="tab:blue", alpha=0.5, label=f"each of {len(histories)} folds"),
                   Line2D([], [], color="black", linewidth=1.8, label="median of the folds\nstill training")]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


def plot_class_counts(class_counts: dict, path: Path) -> None:
    """A bar chart of clips per class: {class: n}, or {part: {class: n}} for grouped bars per part
    (e.g. train / test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = class_counts if all(isinstance(v, dict) for v in class_counts.values()) else {"clips": class_counts}
    classes = list(dict.fromkeys(c for counts in groups.values() for c in counts))
    x = np.arange(len(classes))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(classes) * max(1, len(groups) / 2) + 2), 4))
    for g, (part, counts) in enumerate(groups.items()):
        values = [int(counts.get(c, 0)) for c in classes]
        bars = ax.bar(x + (g - (len(groups) - 1) / 2) * width, values, width, label=str(part))
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, classes, rotation=45, ha="right")
    ax.set_ylabel("clips")
    ax.set_title("clips per class")
    if len(groups) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_run(run_dir, *, config: dict, metrics: dict, histories: list[dict] | None = None,
              class_counts: dict | None = None, title: str, overwrite: bool = False) -> Path:
    """Write a finished run to `run_dir` (created if needed) and return its path.

    Files: config.json, metrics.json (as given), report.md, confusion.png (when a confusion matrix
    is known), curves.png (when `histories` hold curves), class_counts.png (when `class_counts` is
    given). FileExistsError if `run_dir` already holds a metrics.json, unless `overwrite`.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists() and not overwrite:
        raise FileExistsError(
            f"{run_dir} already holds a finished run (metrics.json); choose a new run directory "
            "(report.new_run_dir) or pass overwrite=True to replace it"
        )
    for key in ("classes", *METRICS):
        if key not in metrics:
            raise ValueError(f"metrics lacks {key!r}: every reported number names its metric and classes")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", config)

    classes = list(metrics["classes"])
    cm = _confusion(metrics)
    per_class = metrics.get("per_class") or (per_class_from_confusion(cm, classes) if cm is not None else None)
    n = len(_metric(metrics, "ua")["folds"])
    pngs: dict[str, str] = {}
    for stale in ("confusion.png", "curves.png", "class_counts.png"):
        (run_dir / stale).unlink(missing_ok=True)
    if cm is not None:
        caption = "confusion matrix, row-normalised" + (", summed over folds" if n > 1 else "")
        plot_confusion(cm, classes, run_dir / "confusion.png", f"{caption}\n{describe_protocol(metrics)}")
        pngs["confusion.png"] = caption
    if histories and plot_curves(histories, run_dir / "curves.png", _fold_names(metrics, len(histories))):
        pngs["curves.png"] = "learning curves"
    if class_counts:
        plot_class_counts(class_counts, run_dir / "class_counts.png")
        pngs["class_counts.png"] = "clips per class"
    (run_dir / "report.md").write_text(_report_md(title, metrics, cm, per_class, pngs), encoding="utf-8")
    _write_json(run_dir / "metrics.json", metrics)  # last: its presence marks a finished run
    return run_dir


def summary_table(metrics: dict):
    """A rich Table for the terminal: one row per fold, then mean ± std; columns UA, WA, macro-F1 in
    percent; the caption names the protocol and the classes."""
    from rich.table import Table

    keys = [k for k in METRICS if k in metrics]
    headline = {k: _metric(metrics, k) for k in keys}
    n = max(len(m["folds"]) for m in headline.values())
    table = Table(
        caption=f"{describe_protocol(metrics)}; classes: {', '.join(metrics['classes'])}; "
                "UA = mean per-class recall, WA = accuracy; std over folds with ddof=0",
    )
    table.add_column("fold")
    for k in keys:
        table.add_column(f"{METRIC_NAMES[k]} (%)", justify="right")
    for i, name in enumerate(_fold_names(metrics, n)):
        table.add_row(name, *[_pct(headline[k]["folds"][i]) if i < len(headline[k]["folds"]) else ""
                              for k in keys], end_section=i == n - 1)
    table.add_row("mean ± std", *[_mean_std(headline[k]) for k in keys], style="bold")
    return table


def new_run_dir(base="runs", name: str = "run") -> Path:
    """Create and return `base/<name>-<YYYYmmdd-HHMMSS>`, with "-2", "-3", ... appended when a run
    of the same name started in the same second."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        path = base / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{base}: too many runs named {stem}")
