"""The HTTP service under load, on 127.0.0.1 only: short requests while the largest allowed request
runs, and a bounded soak. Prints each measurement beside its target (issue 13.2).

    python benchmarks/service_load.py                      # the full check: 8 clients, 2000 requests
    python benchmarks/service_load.py --requests 200       # a shorter soak

1. Largest request: a 600 s recording (the default --max-duration) with timeline=true, vad=false
   and the smallest hop its window count allows (max_windows). It is answered 200 or, past the
   time budget, 503; meanwhile one client sends ordinary 3 s clips: p95 < 2 s. What it leaves
   behind: the server's RSS before and after it, growth < 50 % (a server that keeps what one long
   request allocated runs out of memory), and its peak during it, sampled every 0.2 s.
2. Tiny hop: the same recording with hop=0.01 is refused at once (422), before any decoding.
3. Soak: `--clients` threads send `--requests` ordinary 3 s clips in all; the server's RSS after
   a warm-up of WARM_UP requests at the same concurrency, and at the end: growth < 10 %.

The server is `voxemo serve` with the bundled model (or `--model`, in `--runtime`), started as a
subprocess on a free port and stopped at the end.

    python benchmarks/service_load.py --runtime onnx --requests 400
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLIP = DATA / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.flac"
SR = 16000
TARGET_P95_S = 2.0
TARGET_RSS_GROWTH = 0.10
TARGET_RSS_AFTER_LARGEST = 0.50
WARM_UP = 80  # requests at the soak's concurrency before the baseline RSS is read


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def start_server(port: int, runtime: str, model: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "voxemo.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--runtime", runtime]
    proc = subprocess.Popen(cmd + (["--model", model] if model else []),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the server did not answer /health within 120 s")


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--short-during-long", type=int, default=20, help="ordinary requests sent while the largest runs")
    ap.add_argument("--runtime", default="torch", help="the server's --runtime: torch, onnx or onnx-int8")
    ap.add_argument("--model", default=None, help="the server's --model (default: the bundled default model)")
    args = ap.parse_args()

    from voxemo.audio import load_audio
    from voxemo.serve.app import MAX_WINDOWS

    speech = load_audio(CLIP, SR)
    short = wav(speech[: 3 * SR])
    long = wav(np.tile(speech, int(np.ceil(600 * SR / len(speech))))[: 600 * SR])
    hop = round(600 / (MAX_WINDOWS - 2) + 0.005, 2)
    port = free_port()
    url = f"http://127.0.0.1:{port}/predict"
    proc = start_server(port, args.runtime, args.model)
    print(f"server: runtime {args.runtime}, model {args.model or 'the bundled default'}")
    try:
        with httpx.Client(timeout=300) as c:
            for _ in range(5):  # warm-up
                c.post(url, files={"file": ("short.wav", short)}).raise_for_status()

            t = time.perf_counter()
            tiny = c.post(url, params={"timeline": "true", "vad": "false", "hop": 0.01}, files={"file": ("long.wav", long)})
            print(f"tiny hop 0.01 s on 600 s: {tiny.status_code} in {time.perf_counter() - t:.2f} s "
                  f"(target 4xx at once): {tiny.json()['detail'][:90]}")

            result: dict = {}
            rss_before_largest = rss_mb(proc.pid)

            def largest():
                t0 = time.perf_counter()
                with httpx.Client(timeout=600) as lc:
                    r = lc.post(url, params={"timeline": "true", "vad": "false", "hop": hop}, files={"file": ("long.wav", long)})
                result.update(status=r.status_code, seconds=time.perf_counter() - t0, bytes=len(r.content))

            worker = threading.Thread(target=largest)
            worker.start()
            time.sleep(2.0)  # let it upload and start
            waits, during, peak = [], 0, rss_before_largest
            while worker.is_alive() and len(waits) < args.short_during_long:
                peak = max(peak, rss_mb(proc.pid))
                t0 = time.perf_counter()
                c.post(url, files={"file": ("short.wav", short)}).raise_for_status()
                waits.append(time.perf_counter() - t0)
                during += worker.is_alive()
                time.sleep(0.2)
            while worker.is_alive():
                peak = max(peak, rss_mb(proc.pid))
                worker.join(0.2)
            rss_after_largest = rss_mb(proc.pid)
            p95 = float(np.percentile(waits, 95)) if waits else float("nan")
            print(f"largest request (600 s, timeline, vad off, hop {hop} s): {result['status']} in {result['seconds']:.1f} s, "
                  f"{result['bytes'] / 1e6:.2f} MB")
            print(f"ordinary 3 s requests while it ran: {during} of {len(waits)} sent during it, p95 {p95:.2f} s, "
                  f"max {max(waits):.2f} s (target p95 < {TARGET_P95_S:g} s): {'PASS' if p95 < TARGET_P95_S else 'FAIL'}")
            kept = rss_after_largest / rss_before_largest - 1
            print(f"server RSS before the largest request {rss_before_largest:.0f} MB, at most {peak:.0f} MB during it "
                  f"(sampled every 0.2 s), after it {rss_after_largest:.0f} MB: "
                  f"{kept:+.1%} (target < {TARGET_RSS_AFTER_LARGEST:.0%}): {'PASS' if kept < TARGET_RSS_AFTER_LARGEST else 'FAIL'}")

        statuses: dict[int, int] = {}
        lock = threading.Lock()
        t0 = time.perf_counter()

        def client(n: int) -> list[float]:
            out = []
            with httpx.Client(timeout=300) as cc:
                for _ in range(n):
                    t = time.perf_counter()
                    r = cc.post(url, files={"file": ("short.wav", short)})
                    out.append(time.perf_counter() - t)
                    with lock:
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            return out

        with ThreadPoolExecutor(args.clients) as pool:  # warm-up at the soak's concurrency, then the baseline RSS
            list(pool.map(client, [WARM_UP // args.clients] * args.clients))
            before = rss_mb(proc.pid)
            statuses.clear()
            t0 = time.perf_counter()
            per = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
            lat = [x for xs in pool.map(client, per) for x in xs]
        after = rss_mb(proc.pid)
        growth = after / before - 1
        print(f"soak: {args.clients} clients, {len(lat)} requests in {time.perf_counter() - t0:.0f} s, statuses {statuses}, "
              f"latency p50 {np.percentile(lat, 50):.2f} s p95 {np.percentile(lat, 95):.2f} s")
        print(f"server RSS {before:.0f} MB -> {after:.0f} MB: growth {growth:+.1%} (target < {TARGET_RSS_GROWTH:.0%}): "
              f"{'PASS' if growth < TARGET_RSS_GROWTH else 'FAIL'}")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
