"""Corpus-scale prediction and features: a long list of files through a pool of workers, each loading
the model once, results written as they come and a rerun skipping what is done.

`predict_files` writes one JSON object a line (what `voxemo predict --format json` prints: path and
label and probabilities, the no-speech record, or the error); `feature_files` writes Parquet parts
(`part-00000.parquet`, ...: path, error, the clip's features flattened; the shape and settings in the
file's metadata), each part renamed into place only once complete, so a killed run leaves whole parts.
A rerun reads the paths already written and does the others.

The work is one callable per kind (`PredictBatch`, `FeatureBatch`): built once per worker (it loads
the model), called on batches {"path": array of paths}. With the local executor it runs in this
process; with Ray it runs in a pool of Ray Data actors (`map_batches(..., concurrency=workers)`),
streamed: Ray Data holds a bounded number of batches in flight, and the driver writes each as it
arrives. Workers read the files by path: on a cluster every node must see them at the same path.

Letters: B clips, L encoder blocks, D width.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

BATCH = 16  # files per batch handed to a worker
PART_ROWS = 1024  # rows per Parquet part


def prediction_record(path, result: dict) -> dict:
    """One line of JSON output for a file: {"path", "label", "probabilities"}, the no-speech record,
    or {"path", "error"} (as `voxemo predict --format json` prints them)."""
    if "error" in result:
        return {"path": str(path), "error": result["error"]}
    if result.get("no_speech"):
        return {"path": str(path), "label": None, "no_speech": True, "speech": result["speech"]}
    return {"path": str(path), "label": result["label"],
            "probabilities": {k: round(v, 6) for k, v in result["probabilities"].items()}}


class PredictBatch:
    """A worker's model (loaded once): {"path": (B,)} -> {"path", "record": JSON lines}."""

    def __init__(self, model: str | None = None, runtime: str = "torch", threads: int | None = None):
        from .predict import load_model

        _set_threads(threads)
        self.predictor = load_model(model, runtime, threads=threads or 1)

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        records = [json.dumps(prediction_record(r["path"], r)) for r in self.predictor.predict_many(paths)]
        return {"path": np.array(paths, dtype=object), "record": np.array(records, dtype=object)}


class FeatureBatch:
    """A worker's front-end or encoder (built once): {"path": (B,)} -> {"path", "error" ("" when
    none), "features" (float32 bytes, empty for a failed file), "shape" (JSON)}: plain columns that
    Ray Data moves as Arrow without guessing tensor types.

    kind "whisper": each clip's pooled Whisper statistics (L + 1, 2, D) (`embeddings.pooled_stats`,
    as `embed_corpus` caches them); another front-end kind: that front-end on the clip's crop
    (`AudioSettings.load`). A file that fails gets its error and no features.
    """

    def __init__(self, kind: str, audio: dict, frontend: dict | None = None, encoder: str | None = None,
                 threads: int | None = None):
        from .audio import AudioSettings

        _set_threads(threads)
        self.kind, self.audio = kind, AudioSettings(**audio)
        if kind == "whisper":
            from .encoders import load_whisper_encoder

            self.encoder = load_whisper_encoder(encoder)
        else:
            from .features import Frontend, FrontendConfig

            self.frontend = Frontend(FrontendConfig.from_dict(frontend or {"kind": kind}), self.audio.sample_rate).eval()

    def clip(self, path: str) -> np.ndarray | str:
        from .audio import AudioError

        try:
            x = self.audio.load(path)
        except AudioError as e:
            return str(e)
        if self.kind == "whisper":
            from .encoders.whisper import MAX_SAMPLES, MIN_SAMPLES

            if len(x) > MAX_SAMPLES:
                return f"{path}: {len(x) / self.audio.sample_rate:.1f} s is longer than Whisper's 30 s window"
            if len(x) < MIN_SAMPLES:
                return f"{path}: {len(x)} samples is too short for Whisper's log-mel"
        return x

    def __call__(self, batch: dict) -> dict:
        import torch

        paths = [str(p) for p in batch["path"]]
        clips = [self.clip(p) for p in paths]
        good = [i for i, c in enumerate(clips) if not isinstance(c, str)]
        feats: list = [None] * len(paths)
        if good:
            with torch.inference_mode():
                if self.kind == "whisper":
                    from .embeddings import pooled_stats

                    out = pooled_stats(self.encoder, [clips[i] for i in good])  # (B, L + 1, 2, D)
                else:
                    out = [self.frontend(torch.from_numpy(clips[i])[None])[0].numpy() for i in good]
            for i, f in zip(good, out):
                feats[i] = np.asarray(f, dtype=np.float32)
        return {"path": np.array(paths, dtype=object),
                "error": np.array([c if isinstance(c, str) else "" for c in clips], dtype=object),
                "features": np.array([b"" if f is None else f.tobytes() for f in feats], dtype=object),
                "shape": np.array([json.dumps(None if f is None else list(f.shape)) for f in feats], dtype=object)}


def _set_threads(threads: int | None) -> None:
    """torch's threads in a worker (a Ray actor: its CPUs); None leaves this process's setting alone."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _chunks(items: Sequence[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


def run_batches(cls, kwargs: dict, paths: Sequence[str], executor=None, *,
                workers: int | None = None, batch_size: int = BATCH) -> Iterator[dict]:
    """Batches of results for `paths`, as they come: `cls(**kwargs)` built once in this process
    (local executor) or once per Ray Data actor (`workers` of them, `executor.cpus` CPUs each)."""
    if not paths:
        return
    if executor is None or not executor.remote:
        worker = cls(**kwargs)
        for chunk in _chunks(paths, batch_size):
            yield worker({"path": np.array(chunk, dtype=object)})
        return
    import logging
    import warnings

    import ray.data

    cpus = executor.cpus
    workers = workers or max(1, int(executor.ray.cluster_resources().get("CPU", 1) // cpus))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    blocks = max(2 * workers, len(paths) // (batch_size * 8))  # enough blocks to keep every worker busy
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=min(blocks, len(paths)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "fewer inputs than actors" on short lists
        ds = ds.map_batches(cls, fn_constructor_kwargs={**kwargs, "threads": cpus}, batch_size=batch_size,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus)
        yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)


# --- predictions: JSON lines -----------------------------------------------------------------------


def done_jsonl(out: Path) -> set[str]:
    """Paths already in a JSON-lines output; a last line cut short by a kill is removed from the file."""
    if not out.is_file():
        return set()
    done, keep = set(), 0
    with open(out, "rb") as fh:
        for line in fh:
            try:
                done.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                break
            if not line.endswith(b"\n"):
                done.discard(json.loads(line)["path"])
                break
            keep += len(line)
    if keep != out.stat().st_size:
        with open(out, "r+b") as fh:
            fh.truncate(keep)
    return done


def predict_files(files: Iterable[str | os.PathLike], out: str | os.PathLike, *, model=None, runtime: str = "torch",
                  executor=None, workers: int | None = None, batch_size: int = BATCH,
                  progress: Callable[[int], None] | None = None) -> dict:
    """Predict every file not yet in `out` (JSON lines, appended as results come): {"done_before",
    "written", "failed", "no_speech"}."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_jsonl(out)
    todo = list(dict.fromkeys(str(f) for f in files if str(f) not in done))
    kwargs = {"model": None if model is None else str(model), "runtime": runtime}
    counts = {"done_before": len(done), "written": 0, "failed": 0, "no_speech": 0}
    if progress:
        progress(len(set(map(str, files))) - len(todo) if not isinstance(files, Iterator) else 0)
    with open(out, "a") as fh:
        for batch in run_batches(PredictBatch, kwargs, todo, executor,
                                 workers=workers, batch_size=batch_size):
            for line in batch["record"]:
                fh.write(line + "\n")
                counts["failed"] += '"error": ' in line
                counts["no_speech"] += '"no_speech": true' in line
            fh.flush()
            counts["written"] += len(batch["record"])
            if progress:
                progress(len(batch["record"]))
    return counts


# --- features: Parquet parts -----------------------------------------------------------------------


def done_parquet(out_dir: Path) -> tuple[set[str], int]:
    """Paths in the finished parts of a features folder, and the next part's number."""
    import pyarrow.parquet as pq

    parts = sorted(out_dir.glob("part-*.parquet"))
    done: set[str] = set()
    for p in parts:
        done.update(pq.read_table(p, columns=["path"]).column("path").to_pylist())
    nxt = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
    return done, nxt


def write_part(out_dir: Path, number: int, rows: list[tuple[str, str | None, np.ndarray | None]], meta: dict) -> Path:
    """One Parquet part (path, error, features as a flat float32 list), renamed into place when whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape = next((f.shape for _, _, f in rows if f is not None), None)
    table = pa.table({
        "path": pa.array([r[0] for r in rows], pa.string()),
        "error": pa.array([r[1] for r in rows], pa.string()),
        "features": pa.array([None if f is None else f.reshape(-1) for _, _, f in rows], pa.list_(pa.float32())),
    }).replace_schema_metadata({"voxemo": json.dumps({**meta, "shape": None if shape is None else list(shape)})})
    path = out_dir / f"part-{number:05d}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def feature_files(files: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, kind: str = "whisper",
                  audio=None, frontend: dict | None = None, encoder: str | None = None, executor=None,
                  workers: int | None = None, batch_size: int = BATCH, part_rows: int = PART_ROWS,
                  progress: Callable[[int], None] | None = None) -> dict:
    """Features of every file not yet in `out_dir`'s parts: {"done_before", "written", "failed", "parts"}.

    audio: an AudioSettings (default: 16 kHz, whole clips); frontend: FrontendConfig fields for a
    front-end kind (default: the kind's own).
    """
    from dataclasses import asdict

    from .audio import AudioSettings

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.parquet.tmp"):  # a part a kill cut short
        stale.unlink()
    done, number = done_parquet(out_dir)
    todo = list(dict.fromkeys(str(f) for f in files if str(f) not in done))
    audio = audio or AudioSettings()
    kwargs = {"kind": kind, "audio": asdict(audio), "frontend": frontend, "encoder": encoder}
    meta = {k: v for k, v in kwargs.items() if k != "encoder"}
    counts = {"done_before": len(done), "written": 0, "failed": 0, "parts": 0}
    if progress:
        progress(len(set(map(str, files))) - len(todo) if not isinstance(files, Iterator) else 0)
    rows: list = []
    for batch in run_batches(FeatureBatch, kwargs, todo, executor,
                             workers=workers, batch_size=batch_size):
        rows += [(p, e or None, np.frombuffer(f, np.float32).reshape(json.loads(sh)) if f else None)
                 for p, e, f, sh in zip(batch["path"], batch["error"], batch["features"], batch["shape"])]
        counts["failed"] += sum(bool(e) for e in batch["error"])
        if progress:
            progress(len(batch["path"]))
        while len(rows) >= part_rows:
            write_part(out_dir, number, rows[:part_rows], meta)
            rows, number, counts["parts"], counts["written"] = rows[part_rows:], number + 1, counts["parts"] + 1, counts["written"] + part_rows
    if rows:
        write_part(out_dir, number, rows, meta)
        counts["parts"] += 1
        counts["written"] += len(rows)
    return counts


def read_features(out_dir: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """A features folder back: (paths, features (B, ...) float32 of the files without error, metadata)."""
    import pyarrow.parquet as pq

    paths, feats, meta = [], [], {}
    for part in sorted(Path(out_dir).glob("part-*.parquet")):
        t = pq.read_table(part)
        meta = json.loads(t.schema.metadata[b"voxemo"]) if not meta.get("shape") else meta
        for p, e, f in zip(t.column("path").to_pylist(), t.column("error").to_pylist(), t.column("features").to_numpy(zero_copy_only=False)):
            if e is None:
                paths.append(p)
                feats.append(np.asarray(f, dtype=np.float32))
    shape = tuple(meta.get("shape") or ())
    return paths, (np.stack(feats).reshape(len(feats), *shape) if feats else np.zeros((0, *shape), np.float32)), meta
