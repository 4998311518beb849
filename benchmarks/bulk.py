"""Corpus-scale prediction (issue 15.3): a long file list through `voxemo predict --out` on the local
executor and on a local Ray instance, files per second and peak memory.

    PYTHONPATH=. .venv/bin/python benchmarks/bulk.py [--files 20000] [--cpus 2] [--model voxemo_net]
        [--executor local,ray] [--embed 0]

The list is the 1440 RAVDESS speech clips of ../shared/data repeated (made unique by `./`
segments in the paths, so each line is a new path the rerun logic counts) up to `--files`. Each
executor writes its own JSON-lines file in a temporary folder; the time is the whole call (model
loading and, for Ray, starting the instance and its actors). Peak memory is the largest sum of the
resident memory of this process and all its descendants (Ray's raylet, object store and workers),
sampled every 0.2 s from /proc. `--embed N` also times the Whisper encoder's pooled statistics
(`voxemo features --kind whisper`) on N clips with one thread, in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ravdess_speech"
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


class PeakMemory:
    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def file_list(n: int) -> list[str]:
    clips = sorted(str(p) for p in DATA.glob("Actor_*/*.flac"))
    return [clips[i % len(clips)].replace("/Actor_", "/" + "./" * (i // len(clips)) + "Actor_", 1) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--cpus", type=int, default=2, help="Ray: CPUs of the local instance (one worker per CPU)")
    ap.add_argument("--model", default="voxemo_net")
    ap.add_argument("--executor", default="local,ray")
    ap.add_argument("--embed", type=int, default=0, help="also time the Whisper encoder on this many clips, one thread")
    args = ap.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    sys.path.insert(0, str(REPO))
    import torch

    from voxemo.bulk import feature_files, predict_files
    from voxemo.executors import RayExecutor, ray_shutdown

    files = file_list(args.files)
    tmp = Path(tempfile.mkdtemp(prefix="vxb"))
    results = {"files": len(files), "model": args.model, "cpu_count": os.cpu_count(),
               "load_average_before": os.getloadavg()}
    try:
        for name in args.executor.split(","):
            executor = None
            torch.set_num_threads(1)  # the local path: one process, one thread (what `voxemo predict` uses)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                if name == "ray":
                    executor = RayExecutor(num_cpus=args.cpus, temp_dir=str(tmp / "r"))
                counts = predict_files(files, tmp / f"{name}.jsonl", model=args.model, executor=executor)
                seconds = time.perf_counter() - t0
            if name == "ray":
                ray_shutdown()
            results[name] = {**counts, "seconds": round(seconds, 1), "files_per_s": round(len(files) / seconds, 1),
                             "peak_rss_mb": round(mem.peak / 2**20)}
            print(name, json.dumps(results[name]), flush=True)
        if args.embed:
            torch.set_num_threads(1)
            from voxemo.encoders import load_whisper_encoder

            load_whisper_encoder()  # loading is not timed
            t0 = time.perf_counter()
            counts = feature_files(file_list(args.embed), tmp / "embed", kind="whisper")
            seconds = time.perf_counter() - t0
            results["whisper_embed"] = {**counts, "seconds": round(seconds, 1),
                                        "clips_per_s_one_thread": round(args.embed / seconds, 2)}
            print("whisper", json.dumps(results["whisper_embed"]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
