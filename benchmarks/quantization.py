"""int8 against float: does quantising the default model's ONNX graph move its accuracy? (issue 12.6)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantization.py [--model voxemo_whisper] [--data ../shared/data]

The model's own held-out speakers (`test_speakers` in its JSON: RAVDESS 23, 24 and EmoDB 03, 08 for
the default) and its validation speakers, every clip whose label the model has (calm counted as
neutral, as the default was trained), each through `Predictor.predict` (decoding, the no-speech
gate, the graph) with `--runtime onnx` and with `--runtime onnx-int8`. Prints side by side:

- UA of the held-out speakers per part (RAVDESS speech, RAVDESS song, EmoDB), float and int8, and
  the change; the issue allows int8 where UA moves by less than one point. One clip of a class is
  one point or more here (17 to 24 clips a class), so the changes are also given in clips;
- labels that differ between the two over held-out and validation speakers together;
- the graph alone on one thread, median ms per prepared clip, float and int8 (the clips as they
  come, 1 to 5 s);
- the same for the comparison that chose which products are quantised: every one of them in int8,
  the feed-forward down-projections too (`quantize_int8(down_projections=True)`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from voxemo.corpora import scan
from voxemo.evaluate import classification_metrics
from voxemo.export import export_onnx, quantize_int8, set_props
from voxemo.predict import Predictor, load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import graph_ms  # noqa: E402  (the same timing as the inference benchmark)

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"ravdess_speech": "RAVDESS speech", "ravdess_song": "RAVDESS song", "emodb": "EmoDB"}
MERGE = {"calm": "neutral"}  # as the default model was trained (scripts/train_bundled_encoder.py)
TARGET_POINTS = 1.0  # largest UA change in points allowed for int8


def speakers_clips(data: Path, speakers: set[str], labels: list[str]) -> list[tuple[str, str, str, int]]:
    """(part, speaker, path, label index) of every clip of `speakers` ("corpus:speaker") with a label the model has."""
    out = []
    for folder, part in CORPORA.items():
        for u in scan(data / folder):
            emotion = MERGE.get(u.emotion, u.emotion)
            if u.speaker in speakers and emotion in labels:
                out.append((part, u.speaker, str(u.path), labels.index(emotion)))
    return out


def every_product_graph(pipe, folder: Path) -> Path:
    """The comparison's graph: every large matrix product in int8, the feed-forward down-projections too."""
    float_graph, graph = folder / "float.onnx", folder / "every.onnx"
    meta = export_onnx(pipe, float_graph)
    n = quantize_int8(float_graph, graph, down_projections=True)
    set_props(graph, {k: v for k, v in meta.items() if k not in ("parity",)} | {"weights": "int8", "int8_products": str(n),
                                                                             "labels": json.dumps(meta["labels"])})
    return graph


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="voxemo_whisper", help="A bundled model's name or a pipeline path.")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()

    pipe = load_model(args.model).pipeline
    labels = list(pipe.labels)
    test = set(pipe.meta.get("test_speakers", []))
    validation = set(pipe.meta.get("validation_speakers", []))
    if not test:
        sys.exit(f"{args.model}: its JSON names no held-out speakers (test_speakers)")
    clips = speakers_clips(args.data, test | validation, labels)
    held_out = np.array([speaker in test for _, speaker, _, _ in clips])
    parts = np.array([part for part, _, _, _ in clips])
    y = np.array([k for _, _, _, k in clips])
    paths = [path for _, _, path, _ in clips]
    print(f"{os.cpu_count()} CPU cores; {args.model}: {pipe.model.name}; {held_out.sum()} clips of the held-out "
          f"speakers {sorted(test)}, {(~held_out).sum()} of the validation speakers {sorted(validation)}")

    predicted, ms = {}, {}
    with tempfile.TemporaryDirectory(prefix="voxemo-int8-") as tmp:
        every = every_product_graph(pipe, Path(tmp))
        for runtime, graph in (("onnx", None), ("onnx-int8", None), ("onnx-int8", every)):
            name = "every product" if graph else runtime
            t0 = time.perf_counter()
            predictor = Predictor(pipe, runtime=runtime, onnx_path=graph, threads=1)  # exported on the fly
            records = [predictor.predict(p) for p in paths]
            predicted[name] = np.array([-1 if r["label"] is None else labels.index(r["label"]) for r in records])
            ms[name] = graph_ms(predictor, [predictor.audio.prepare(p) for p in paths], warmup=5)
            print(f"  {name}: {len(paths)} clips in {time.perf_counter() - t0:.0f} s", flush=True)

    for name in ("onnx-int8", "every product"):
        what = "onnx-int8 (the runtime)" if name == "onnx-int8" else "every product in int8 (the comparison)"
        print(f"\n{what} against float; held-out speakers, UA in % over the classes present ({', '.join(labels)}; "
              f"calm counted as neutral):")
        print(f"  {'part':15s} {'clips':>5s} {'float':>6s} {'int8':>6s} {'change':>7s}  labels right -> wrong / wrong -> right")
        worst = 0.0
        for part in CORPORA.values():
            m = held_out & (parts == part)
            present = sorted(set(y[m].tolist()))
            ua = {r: 100 * classification_metrics(y[m], predicted[r][m], present)["ua"] for r in ("onnx", name)}
            change = ua[name] - ua["onnx"]
            worst = max(worst, abs(change))
            right = {r: predicted[r][m] == y[m] for r in ("onnx", name)}
            lost, won = int((right["onnx"] & ~right[name]).sum()), int((~right["onnx"] & right[name]).sum())
            print(f"  {part:15s} {m.sum():5d} {ua['onnx']:6.1f} {ua[name]:6.1f} {change:+7.1f}  {lost} / {won}")
        print(f"  largest change {worst:.1f} points (target < {TARGET_POINTS:g}: {'ok' if worst < TARGET_POINTS else 'MISSED'})")
        differ = predicted["onnx"] != predicted[name]
        print(f"  labels that differ from float, held-out and validation speakers: {differ.sum()} of {len(paths)} "
              f"({100 * differ.mean():.1f} %)")
        print(f"  the graph alone, 1 thread, median per prepared clip: float {ms['onnx']:.1f} ms, int8 {ms[name]:.1f} ms "
              f"({ms['onnx'] / ms[name]:.2f}x)")


if __name__ == "__main__":
    main()
