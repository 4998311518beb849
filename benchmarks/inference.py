"""Inference speed: latency per 3 s clip with torch and ONNX Runtime on one thread, and the HTTP service's
requests per second under concurrent clients on loopback.

    .venv/bin/python benchmarks/inference.py [--models voxemo_whisper,voxemo_net] [--clients 8] [--requests 300] [--runtime onnx,onnx-int8]

1. Latency. The first `--clips` RAVDESS speech clips, cut as the model was trained (its offset and
   duration, 3 s for the papers' crop), go one at a time through `Predictor.predict` (decoded arrays in,
   so file decoding is not timed): torch with `torch.set_num_threads(1)`, then ONNX Runtime with
   `intra_op_num_threads=1`, the float graph and the int8 one (`--runtime onnx-int8`; whether its
   labels hold: benchmarks/quantization.py), after `--warmup` calls each. Prints the median and 95th percentile per
   clip and the real-time factor (processing time / audio time; below 1 is faster than real time).
2. Service. `voxemo serve` in a subprocess on a free 127.0.0.1 port (all cores of the machine),
   `--clients` threads each with its own httpx client posting the clips as 3 s 16 kHz WAV uploads to
   /predict, `--requests` in all. Prints requests/s, latency per request and the number of errors
   (a non-200 answer or a failed connection).

Both bundled models side by side. Targets: voxemo_whisper <= 50 ms per clip with ONNX on one core and
>= 30 requests/s on 2 cores; voxemo_net <= 10 ms and >= 50 requests/s; zero errors. Every request goes
through the no-speech gate (silero-vad) as `voxemo predict` does.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voxemo.audio import load_audio
from voxemo.export import ExportError
from voxemo.pipeline import PipelineError, load_pipeline
from voxemo.predict import RUNTIMES, Predictor, load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ravdess_speech"
TARGET_ONNX_MS = 10.0  # per 3 s clip, one core (the small model)
TARGET_RPS = 50.0  # service requests/s on 2 cores (the small model)
TARGETS = {  # bundled model -> (ONNX ms per 3 s clip on one core, service requests/s on 2 cores)
    "voxemo_whisper": (50.0, 30.0),  # the default: Whisper base encoder + head
    "voxemo_net": (TARGET_ONNX_MS, TARGET_RPS),  # the small, fastest model
}
TARGET_ERRORS = 0


def clips(data: Path, n: int, audio) -> list[np.ndarray]:
    """n clips cut like the training clips (offset, duration) at the model's rate."""
    paths = sorted(data.glob("Actor_*/*.flac"))[:: max(1, 1440 // n)][:n]
    if not paths:
        sys.exit(f"no RAVDESS clips under {data}")
    return [load_audio(p, audio.sample_rate, offset=audio.offset, duration=audio.duration or 3.0) for p in paths]


def latency(predictor, waves: list[np.ndarray], sr: int, warmup: int) -> np.ndarray:
    """Seconds per `predict` call, one clip at a time."""
    for x in waves[:warmup]:
        predictor.predict(x, sr=sr)
    out = []
    for x in waves:
        t = time.perf_counter()
        predictor.predict(x, sr=sr)
        out.append(time.perf_counter() - t)
    return np.array(out)


def graph_ms(predictor, prepared: list[np.ndarray], warmup: int) -> float:
    """Median ms of the ONNX graph alone per prepared clip (`Predictor.run`), after `warmup` untimed calls."""
    for w in prepared[:warmup]:
        predictor.run(w)
    times = []
    for w in prepared:
        t = time.perf_counter()
        predictor.run(w)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav_bytes(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def service(model: str | None, runtime: str, uploads: list[bytes], clients: int, n_requests: int) -> dict:
    """Start `voxemo serve`, hit /predict from `clients` threads, `n_requests` in all; stop it."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "voxemo.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--runtime", runtime]
    cmd += ["--model", model]
    log = tempfile.TemporaryFile("w+")  # the server's log (a pipe nobody reads would fill and block it)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                sys.exit(f"`voxemo serve` exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("`voxemo serve` did not answer /health within 120 s")
            time.sleep(0.2)

        lock = threading.Lock()
        state = {"next": 0, "errors": 0, "first_error": None}
        times: list[float] = []

        def client():
            with httpx.Client(base_url=url, timeout=60) as c:
                while True:
                    with lock:
                        i = state["next"]
                        if i >= n_requests:
                            return
                        state["next"] += 1
                    t = time.perf_counter()
                    try:
                        r = c.post("/predict", files={"file": (f"clip{i}.wav", uploads[i % len(uploads)], "audio/wav")})
                        ok, why = r.status_code == 200, f"{r.status_code} {r.text[:200]}"
                    except httpx.HTTPError as e:
                        ok, why = False, repr(e)
                    with lock:
                        times.append(time.perf_counter() - t)
                        if not ok:
                            state["errors"] += 1
                            state["first_error"] = state["first_error"] or why

        for x in uploads[:4]:  # warm-up: first requests load lazy parts
            httpx.post(f"{url}/predict", files={"file": ("w.wav", x, "audio/wav")}, timeout=60)
        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {"rps": n_requests / wall, "latency": np.array(times), "errors": state["errors"],
            "first_error": state["first_error"], "wall": wall}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(TARGETS), help="Bundled model names or pipeline paths, comma-separated.")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RAVDESS speech folder.")
    ap.add_argument("--clips", type=int, default=100, help="Clips timed per runtime.")
    ap.add_argument("--warmup", type=int, default=5, help="Untimed calls before timing.")
    ap.add_argument("--clients", type=int, default=8, help="Concurrent HTTP clients.")
    ap.add_argument("--requests", type=int, default=300, help="Requests sent to the service in all.")
    ap.add_argument("--runtime", default="onnx,onnx-int8", help=f"Runtimes of the service, comma-separated ({', '.join(RUNTIMES)}).")
    ap.add_argument("--no-service", action="store_true", help="Only the latency part.")
    args = ap.parse_args()

    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__}")
    for model in args.models.split(","):
        try:
            pipe = load_model(model).pipeline
        except PipelineError as e:
            sys.exit(f"error: {e}")
        # a pipeline path is held to the targets of the bundled model it resembles (an encoder's or the small one's)
        target_ms, target_rps = TARGETS.get(model) or TARGETS["voxemo_whisper" if pipe.encoder is not None else "voxemo_net"]
        a = pipe.audio
        sr = a.sample_rate
        waves = clips(args.data, args.clips, a)
        seconds = waves[0].shape[0] / sr
        print(f"\n{model}: {pipe.model.name} ({len(pipe.labels)} classes), {len(waves)} RAVDESS clips of {seconds:g} s "
              f"at {sr} Hz")
        torch.set_num_threads(1)
        t_torch = latency(Predictor(pipe, runtime="torch"), waves, sr, args.warmup)
        timed = {"torch": t_torch}
        runnable = ["onnx"]
        for runtime in ("onnx", "onnx-int8"):  # exported (and quantised) on the fly
            try:
                onnx_predictor = Predictor(pipe, runtime=runtime, threads=1)
            except ExportError as e:  # a model without large matrix products has no int8 graph
                print(f"  {runtime}: {e}")
                continue
            runnable.append(runtime)
            timed[runtime] = latency(onnx_predictor, waves, sr, args.warmup)
            # what the graph receives, prepared once
            med = graph_ms(onnx_predictor, [onnx_predictor.audio.prepare(x, sr) for x in waves], args.warmup)
            print(f"  the ONNX graph alone ({runtime}: prepared clip in, probabilities out), 1 thread: median {med:7.2f} ms "
                  f"per {seconds:g} s clip (target <= {target_ms:g} ms: {verdict(med <= target_ms)})")
        print("  `predict` adds decoding checks and the no-speech gate (silero-vad on every 32 ms frame):")
        for name, t in timed.items():
            med, p95 = 1000 * np.median(t), 1000 * np.percentile(t, 95)
            target = f"  (target <= {target_ms:g} ms: {verdict(med <= target_ms)})" if name != "torch" else ""
            print(f"  `predict` {name:9s} 1 thread: median {med:7.2f} ms, p95 {p95:7.2f} ms per {seconds:g} s clip; "
                  f"real-time factor {np.median(t) / seconds:.4f}{target}")
        if args.no_service:
            continue
        uploads = [wav_bytes(x, sr) for x in waves]
        for runtime in [r for r in args.runtime.split(",") if r in runnable or r == "torch"]:
            s = service(model, runtime, uploads, args.clients, args.requests)
            lat = 1000 * s["latency"]
            print(f"  service ({runtime}, {os.cpu_count()} cores): {args.requests} requests from {args.clients} clients "
                  f"in {s['wall']:.2f} s: {s['rps']:.1f} requests/s (target >= {target_rps:g}: {verdict(s['rps'] >= target_rps)}); "
                  f"latency median {np.median(lat):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms; "
                  f"errors: {s['errors']} (target {TARGET_ERRORS}: {verdict(s['errors'] == TARGET_ERRORS)})"
                  + (f"; first: {s['first_error']}" if s["first_error"] else ""))


if __name__ == "__main__":
    main()
