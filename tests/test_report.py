"""Run directories: the files a user opens after a run, their content, and refusal to overwrite."""

import json
import re

import numpy as np
import pytest
from rich.console import Console

from voxemo.evaluate import aggregate, classification_metrics
from voxemo.report import curves_figure, new_run_dir, summary_table, write_run

CLASSES = ["neutral", "happy", "sad", "angry"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def metrics_of_three_folds():
    folds = []
    for k, (t, p) in enumerate([
        ([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 2, 2, 2, 3, 3]),
        ([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 1, 2, 3, 3, 0]),
        ([0, 1, 1, 2, 2, 3, 3, 3], [0, 1, 1, 2, 2, 3, 3, 3]),
    ]):
        m = classification_metrics(t, p, CLASSES)
        m["name"] = f"fold {k + 1}/3: test ravdess:0{k + 1}"
        folds.append(m)
    return {"protocol": "speaker-kfold", "speaker_independent": True, **aggregate(folds), "folds": folds}


HISTORIES = [
    {"train_loss": [1.4, 1.0, 0.8], "val_loss": [1.3, 1.1, 1.2], "train_acc": [0.3, 0.5, 0.7], "val_ua": [0.3, 0.4, 0.45]},
    {"train_loss": [1.5, 1.1], "val_acc": [0.25, 0.4]},  # keys may be missing
    {},
]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, f"{path} is only {len(data)} bytes"


def test_write_run_files_and_content(tmp_path):
    metrics = metrics_of_three_folds()
    config = {"model": "cnn_lstm", "frontend": {"kind": "logmel", "n_mels": 64}, "seed": 0}
    out = write_run(tmp_path / "run", config=config, metrics=metrics, histories=HISTORIES,
                    class_counts={"train": {c: 10 + i for i, c in enumerate(CLASSES)}, "test": dict.fromkeys(CLASSES, 2)},
                    title="CNN-LSTM on RAVDESS")
    for name in ("config.json", "metrics.json", "report.md", "confusion.png", "curves.png", "class_counts.png"):
        assert (out / name).is_file(), name
    for name in ("confusion.png", "curves.png", "class_counts.png"):
        assert_png(out / name)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((out / "config.json").read_text()) == config

    md = (out / "report.md").read_text()
    assert md.startswith("# CNN-LSTM on RAVDESS")
    assert "speaker-independent" in md and "speaker-dependent" not in md
    assert "Classes (4): neutral, happy, sad, angry" in md
    ua = metrics["ua"]
    assert f"{100 * ua['mean']:.2f} ± {100 * ua['std']:.2f}" in md
    for v in ua["folds"] + metrics["wa"]["folds"] + metrics["macro_f1"]["folds"]:
        assert f"{100 * v:.2f}" in md
    assert "fold 2/3: test ravdess:02" in md
    assert "ddof=0" in md and "mean per-class recall" in md
    # per-class table and the summed confusion matrix as markdown rows
    assert re.search(r"\| sad \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 6 \|", md)
    assert "| **neutral** | " + " | ".join(map(str, metrics["confusion"][0])) + " |" in md
    for png in ("confusion.png", "curves.png", "class_counts.png"):
        assert f"]({png})" in md


def legend_lies_on_the_figure(fig):
    fig.canvas.draw()
    box, page = fig.legends[0].get_window_extent(), fig.bbox
    return box.y0 >= page.y0 and box.y1 <= page.y1 and box.x0 >= page.x0 and box.x1 <= page.x1


def test_curves_name_a_few_folds_and_summarise_fifty_with_a_median(tmp_path):
    few = curves_figure(HISTORIES, ["fold 1/3: test ravdess:01", "fold 2/3: test ravdess:02", "fold 3/3: x"])
    assert [t.get_text() for t in few.legends[0].get_texts()] == ["fold 1/3", "fold 2/3"]  # fold 3 has no curve
    assert legend_lies_on_the_figure(few)

    # 50 folds (the 10-fold x 5 protocol) that stop at 20 to 69 epochs; fold k's loss is k + 1/epoch
    fifty = [{"train_loss": [k + 1 / e for e in range(1, 21 + k)]} for k in range(50)]
    fig = curves_figure(fifty, [f"fold {k + 1}/50: test x" for k in range(50)])
    assert legend_lies_on_the_figure(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["each of 50 folds", "median of the folds\nstill training"]
    median = [line for line in fig.axes[0].lines if line.get_color() == "black"][0].get_ydata()
    assert len(median) == 69 and median[0] == pytest.approx(np.median(range(50)) + 1)
    assert median[-1] == pytest.approx(49 + 1 / 69)  # only the longest fold still trains at epoch 69
    assert curves_figure([{}, {"val_acc": []}]) is None


def test_random_split_is_labelled_speaker_dependent_and_plots_are_optional(tmp_path):
    m = classification_metrics([0, 1, 2, 3, 3], [0, 1, 2, 3, 0], CLASSES)
    metrics = {"protocol": "random", "speaker_independent": False, "classes": CLASSES,
               "ua": {"mean": m["ua"], "std": 0.0, "folds": [m["ua"]]},
               "wa": {"mean": m["wa"], "std": 0.0, "folds": [m["wa"]]},
               "macro_f1": {"mean": m["macro_f1"], "std": 0.0, "folds": [m["macro_f1"]]},
               "folds": [m]}
    out = write_run(tmp_path / "r", config={}, metrics=metrics, histories=None, class_counts=None, title="random")
    md = (out / "report.md").read_text()
    assert "random split (speaker-dependent)" in md
    assert (out / "confusion.png").is_file()  # summed from the folds' own matrices
    assert not (out / "curves.png").exists() and not (out / "class_counts.png").exists()
    assert "curves.png" not in md


def test_refuses_to_overwrite_a_finished_run(tmp_path):
    metrics = metrics_of_three_folds()
    run = write_run(tmp_path / "run", config={}, metrics=metrics, histories=None, class_counts=None, title="a")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_run(run, config={}, metrics=metrics, histories=None, class_counts=None, title="b")
    assert (run / "report.md").read_text().startswith("# a")  # untouched
    write_run(run, config={}, metrics=metrics, histories=None, class_counts=None, title="b", overwrite=True)
    assert (run / "report.md").read_text().startswith("# b")


def test_metrics_must_name_classes(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        write_run(tmp_path / "x", config={}, metrics={"ua": 0.5, "wa": 0.5, "macro_f1": 0.5},
                  histories=None, class_counts=None, title="t")


def test_summary_table_rows_and_caption():
    metrics = metrics_of_three_folds()
    console = Console(record=True, width=200)
    console.print(summary_table(metrics))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "fold 1/3: test ravdess:01" in text and "mean ± std" in text
    assert f"{100 * metrics['ua']['mean']:.2f} ± {100 * metrics['ua']['std']:.2f}" in text
    assert "speaker-independent" in text and "neutral, happy, sad, angry" in text
    assert "UA" in text and "WA" in text and "macro-F1" in text


def test_new_run_dir_is_unique(tmp_path):
    a = new_run_dir(tmp_path / "runs", "cnn")
    b = new_run_dir(tmp_path / "runs", "cnn")
    assert a != b and a.is_dir() and b.is_dir()
    assert re.fullmatch(r"cnn-\d{8}-\d{6}(-\d+)?", a.name)


def test_a_capped_run_says_how_many_of_the_protocols_folds_ran():
    from voxemo.report import describe_protocol

    metrics = metrics_of_three_folds()
    assert describe_protocol(metrics) == "speaker-independent (speaker k-fold, 3 folds)"
    assert describe_protocol({**metrics, "folds_total": 6}) == "speaker-independent (speaker k-fold, 3 of 6 folds)"
    one = {**metrics, "folds": metrics["folds"][:1], "ua": {**metrics["ua"], "folds": metrics["ua"]["folds"][:1]}}
    assert describe_protocol({**one, "folds_total": 6}).endswith("1 of 6 folds)")
