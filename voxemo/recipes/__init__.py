"""The papers' experiments as small TOML files, and `reproduce` that runs one and prints paper vs ours.

A recipe has rows; each row names its data (folders under the data root), the paper's figure and
metric, the settings common to both runs (`[row.common]`), and what differs between the paper's
protocol (`[row.paper_protocol]`, default: a random split with the recipe's ratios) and our
speaker-independent protocol (`[row.speaker_independent]`, default: 6 speaker folds). `[defaults]`
apply to every row; `[budget]` (and a row's own `[row.budget]`) sets what the default run does so a
recipe fits in 30 minutes on two cores (epochs, early-stopping patience, folds run); `--full` drops
the budget and trains to convergence: every fold, each run for the paper's epochs or until the
validation score has not improved for the model's patience (`voxemo.papers`: 15 for seeds 000,
001 and 004, 20 for 002, 10 for 003; seed004's LSTM and TD-CNN + LSTM watch the validation loss, the
others the UA), whichever comes first, keeping the best validation epoch;
`--quick` shrinks everything to a smoke run on six speakers. A row may run one protocol only
(`protocols = ["paper_protocol"]`, for a variant that only means something under the paper's split).
A recipe whose paper reports validation, not test, figures says `paper_reports = "validation"`; its
table then gives, beside ours on the test clips, ours on the validation clips at the epoch kept
(`runs.validation_at_best`), the figure the paper's is comparable with.

Each network row's table line also gives ComParE + SVM on the same speaker-independent test folds
(`same_folds`: the recipe's reference row whose folds begin with the same fold names and test clips,
averaged over just the folds the network ran), so a row reads paper / ours under the paper's
protocol / ours speaker-independent / the classic baseline on those very speakers.

A run resumes: `reproduce` into the same out_dir keeps every finished fold and continues a fold in
progress from its last finished epoch, so a `--full` recipe may span several sittings; each row's
wall time (results.json `seconds`, the table's last column) adds up all of them. `--rows 7-10` runs
some rows only, so two processes (or machines sharing the folder) can share a recipe's rows; a
final `--resume` run of every row assembles the whole table from their finished folds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np

RECIPES = Path(__file__).parent
QUICK = {"epochs": 1, "max_folds": 1, "speakers": 6}
PROTOCOLS = ("paper_protocol", "speaker_independent")  # a row's two runs


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def load_recipe(name: str) -> dict:
    path = RECIPES / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(list_recipes())}")
    return tomllib.loads(path.read_text())


def _merge(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def row_experiments(recipe: dict, row: dict, *, quick: bool = False, full: bool = False) -> dict[str, dict]:
    """The two experiment dicts of a row: "paper_protocol" and "speaker_independent"."""
    from ..baseline import BASELINES

    budget = {**recipe.get("budget", {}), **row.get("budget", {})}  # a row's own budget wins
    if full or row.get("common", {}).get("model") in BASELINES:
        budget = {}  # an SVM fold takes seconds: the baselines always run every fold
    base = _merge(recipe.get("defaults", {}), row.get("common", {}))
    out = {}
    for key, default in (("paper_protocol", {"protocol": "random"}), ("speaker_independent", {"protocol": "speaker-kfold"})):
        if key not in row.get("protocols", PROTOCOLS):
            continue
        d = _merge(base, default, row.get(key, {}))
        if d["protocol"] not in ("random",) and "max_folds" not in d and budget.get("max_folds"):
            d["max_folds"] = budget["max_folds"]
        if train_budget := {k: budget[k] for k in ("epochs", "patience") if budget.get(k)}:
            d = _merge(d, {"train": train_budget})
        if d["protocol"] != "random":
            d.pop("ratios", None)
        if quick:
            d = _merge(d, {"train": {"epochs": QUICK["epochs"]}, "max_folds": QUICK["max_folds"]})
        out[key] = d
    return out


def parse_rows(spec: str, n: int) -> list[int]:
    """"7-10" or "1,3" (1-based, as the table counts) -> the row numbers, each checked against the
    recipe's n rows."""
    out: list[int] = []
    for part in spec.split(","):
        if not re.fullmatch(r"\d+(-\d+)?", part.strip()):
            raise ValueError(f"rows are numbers or ranges, comma-separated (e.g. 7-10 or 1,3), not {spec!r}")
        a, _, b = part.strip().partition("-")
        out += range(int(a), int(b or a) + 1)
    if not out or not all(1 <= r <= n for r in out):
        raise ValueError(f"rows must lie in 1-{n} (the recipe's rows), not {spec!r}")
    return sorted(set(out))


def reproduce(name: str, data_root: Path, out_dir: Path, *, quick: bool = False, full: bool = False,
              on_row: Callable[[str], None] | None = None, executor=None, rows: list[int] | None = None,
              on_fold: Callable[[str, int, int, dict], None] | None = None) -> dict:
    """Run every row of a recipe under both protocols; write `table.md` and `results.json` to out_dir.

    executor: where each row's folds run (`voxemo.executors`; default in this process). Rows run one
    after another, their folds side by side; SVM baseline rows run in this process.
    rows: only these rows (1-based), e.g. to share a long recipe between processes writing into the same
    out_dir; their table is `table-rows-A-B.md` (and results-rows-A-B.json), and a later run of every
    row with `--resume` assembles the whole table from the finished folds.
    on_row(run) as each row's run starts, on_fold(run, i, n, m) as its folds finish (`cross_validate`'s
    on_fold), run naming the row and protocol."""
    from ..experiment import Experiment, cross_validate, load_corpora

    recipe = load_recipe(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = rows or list(range(1, len(recipe["row"]) + 1))
    rows = []
    t0 = time.perf_counter()
    for i, row in enumerate(recipe["row"]):
        if i + 1 not in chosen:
            continue
        manifest = load_corpora([str(Path(data_root) / d) for d in row["data"]])
        if quick:
            keep = sorted({u.speaker for u in manifest})[: QUICK["speakers"]]
            manifest = [u for u in manifest if u.speaker in keep]
        result = {"label": row["label"], "metric": row.get("metric", "wa"), "paper": row.get("paper"),
                  "paper_train": row.get("paper_train"), "model": row.get("common", {}).get("model")}
        for key, d in row_experiments(recipe, row, quick=quick, full=full).items():
            run = f"{row['label']} [{key}]"
            if on_row:
                on_row(run)
            exp = Experiment(**d)
            m = cross_validate(manifest, exp, out_dir / f"row{i + 1:02d}-{key}", resume=True, executor=executor,
                               on_fold=None if on_fold is None else functools.partial(on_fold, run))
            result[key] = {k: m[k] for k in ("ua", "wa", "macro_f1")} | {
                "protocol": m["protocol"], "speaker_independent": m["speaker_independent"],
                "classes": m["classes"], "folds_run": len(m["folds"]),
                "epochs_run": [f.get("epochs_run") for f in m["folds"]],
                "epochs_cap": None if exp.is_baseline else exp.train_config().epochs,
                "patience": None if exp.is_baseline else exp.train_config().patience,
                "monitor": None if exp.is_baseline else exp.train_config().monitor,  # what patience watches
                "folds_total": m.get("folds_total", len(m["folds"])),
                "flags": [f.get("flags", []) for f in m["folds"]],
                "fold_keys": [[f["fold"], f["n_test"]] for f in m["folds"]],  # which test clips: `same_folds`
                "validation_at_best": m.get("validation_at_best"),
                "seconds": m["seconds"],  # every sitting of a resumed run
            }
        rows.append(result)
    sitting = round(time.perf_counter() - t0, 1)
    total = round(sum(r[k]["seconds"] for r in rows for k in PROTOCOLS if k in r), 1)
    results = {"recipe": name, "title": recipe["title"], "paper_protocol": recipe["paper_protocol"],
               "paper_reports": recipe.get("paper_reports", "test"),
               "reference": recipe.get("reference"), "quick": quick, "full": full,
               "seconds": max(total, sitting),  # the runs, over every sitting
               "sitting_seconds": sitting, "rows": rows}
    part = "" if len(chosen) == len(recipe["row"]) else f"-rows-{'-'.join(map(str, chosen))}"
    results["table_file"] = f"table{part}.md"
    (out_dir / f"results{part}.json").write_text(json.dumps(results, indent=2))
    (out_dir / results["table_file"]).write_text(table_markdown(results))
    return results


def _collapsed(m: dict) -> int:
    return sum(bool(f) for f in m.get("flags", []))


def _pct(m: dict | None, metric: str) -> str:
    if not m:
        return "n/a"
    v = m[metric]
    mark = " ⚠ collapsed" if _collapsed(m) else ""
    return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f} ({len(v['folds'])} fold{'s' if len(v['folds']) > 1 else ''}){mark}"


def _run(m: dict | None) -> str:
    """How much of a protocol ran: folds, and epochs against the cap (below the cap = early stopping)."""
    if not m:
        return "n/a"
    folds = f"{m['folds_run']}/{m.get('folds_total', m['folds_run'])} folds"
    wall = f", {m['seconds'] / 60:.1f} min" if m.get("seconds") is not None else ""
    flags = sorted({f for fold in m.get("flags", []) for f in fold})
    collapsed = f", ⚠ {_collapsed(m)} collapsed ({', '.join(flags)})" if flags else ""
    epochs = [e for e in m.get("epochs_run", []) if e]
    if not epochs or not m.get("epochs_cap"):
        return folds + wall + collapsed
    stopped = sum(e < m["epochs_cap"] for e in epochs)
    watched = " on validation loss" if m.get("monitor") == "val_loss" else ""
    patience = f", patience {m['patience']}{watched}" if m.get("patience") else ""
    return (f"{folds}, {min(epochs)}-{max(epochs)} of {m['epochs_cap']} epochs{patience} ({stopped} stopped early)"
            f"{wall}{collapsed}")


def same_folds(row: dict, rows: list[dict], protocol: str = "speaker_independent") -> dict | None:
    """The ComParE + SVM reference on the folds `row` ran (`protocol`): of a baseline row with the
    same classes (a gender row's reference tells voices apart, not emotions, on the same folds)
    whose folds begin with the same test folds (fold name and test clips), its per-fold figures over
    those folds, {metric: {"mean", "std", "folds"}}; None when the recipe has no such row."""
    from ..baseline import BASELINES

    ran = row.get(protocol) or {}
    keys = ran.get("fold_keys")
    if not keys or row.get("model") in BASELINES:
        return None
    for ref in rows:
        m = ref.get(protocol) or {}
        if (ref.get("model") == "compare_svm" and m.get("classes") == ran.get("classes")
                and m.get("fold_keys", [])[: len(keys)] == keys):
            kept = {k: m[k]["folds"][: len(keys)] for k in ("ua", "wa", "macro_f1")}
            return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v} for k, v in kept.items()}
    return None


def table_markdown(results: dict) -> str:
    """The recipe's table: paper, ours under the paper's protocol, ours speaker-independent."""
    lines = [
        f"### {results['recipe']}: {results['title']}",
        "",
        f"Paper's protocol: {results['paper_protocol']}. Ours, speaker-independent: actor-disjoint folds "
        "(LOSO on EmoDB), validation speakers from the training speakers. Figures in %, mean ± std over folds.",
        "",
        *([f"Reference column: {results['reference']}.", ""] if results.get("reference") else []),
        f"| experiment | metric | {'reference' if results.get('reference') else 'paper'} | ours, paper's protocol | "
        "ours, speaker-independent | ComParE + SVM, same speaker-independent folds | UA, speaker-independent | "
        "run, wall time (paper's protocol; speaker-independent) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        metric = r["metric"]
        paper = "n/a" if r["paper"] is None else f"{100 * r['paper']:.1f}"
        name = {"wa": "WA", "ua": "UA", "macro_f1": "macro-F1"}[metric]
        ours = _pct(r.get("paper_protocol"), metric)
        kept = (r.get("paper_protocol") or {}).get("validation_at_best")
        if results.get("paper_reports") == "validation" and kept:
            ours += f"; validation {100 * kept[metric]['mean']:.1f}"
        svm = same_folds(r, results["rows"])
        lines.append(f"| {r['label']} | {name} | {paper} | {ours} | "
                     f"{_pct(r.get('speaker_independent'), metric)} | {_pct(svm, metric) if svm else '-'} | "
                     f"{_pct(r.get('speaker_independent'), 'ua')} | "
                     f"{_run(r.get('paper_protocol'))}; {_run(r.get('speaker_independent'))} |")
    lines.append("")
    mode = ("Quick smoke run (1 epoch, 6 speakers): not comparable with the paper. " if results["quick"]
            else "Full run (`--full`: every fold; the paper's epochs, or until the validation score has not "
                 "improved for the patience given, whichever comes first). " if results.get("full") else "")
    if any(_collapsed(r.get(k) or {}) for r in results["rows"] for k in PROTOCOLS):
        lines.append("⚠ collapsed: in the folds counted, at least 90 % of the test predictions fell on one class, "
                     "or the training loss never fell below 97 % of ln K (chance); such figures are not a trained "
                     "model's (`evaluate.collapse_flags`).")
        lines.append("")
    sittings = (f" over several sittings (this one {results['sitting_seconds'] / 60:.1f} min)"
                if results.get("sitting_seconds") is not None and results["sitting_seconds"] < results["seconds"] else "")
    lines.append(f"{mode}Wall time {results['seconds'] / 60:.1f} min{sittings}.")
    return "\n".join(lines) + "\n"
