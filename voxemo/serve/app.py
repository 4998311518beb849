"""The HTTP service: one FastAPI app around one `Predictor`.

    POST /predict   multipart upload (field `file`, one file, any format soundfile reads) -> label,
                    probabilities, seconds of speech, duration, or {"label": null, "no_speech": true}
                    when voice activity finds no speech (`audio.speech_seconds`: noise,
                    tones, silence, a very short clip); `?timeline=true&window=2&hop=0.5` adds the
                    timeline of a long recording
    GET  /health    {"status": "ok", ...}
    GET  /model     labels, training corpora, protocol and accuracy from the pipeline file, runtime
    GET  /          the web page (upload a file or record from the microphone)
    GET  /docs      OpenAPI documentation (FastAPI's own)

Limits. An upload above `max_upload_mb` is refused with 413 twice over: by its Content-Length before the
body is read, and by counting bytes as they arrive (a chunked upload carries no length) and again while
the file is copied to disk. A recording longer than `max_duration_s` (read from the file header after
saving, before decoding) gets 413. Content that is not usable audio (not audio, empty, silent, NaN)
gets 415 (soundfile cannot read it) or 422 (it reads, but holds no usable signal) with the message of
`AudioError`; a missing `file` field gets FastAPI's 422.

Bounded work. A request may not ask for more than the service will do: the timeline's hop is at
least `MIN_HOP` s, its windows at most `max_windows` (counted from the header's duration before
any decoding: 422 naming both numbers), and every request has a time budget (`budget_s`): inference
checks it between batches and answers 503 once it is spent; a request that cannot start within
its budget because every slot is busy gets 503 too ("try again").

Concurrency. Uploads are saved and decoded (`load_audio`, the only decoder) in FastAPI's threadpool,
in parallel. Inference runs in `slots` at once (default: one per core, at least 2), each request on
one thread: short clips may take any free slot, while long requests (recordings over `LONG_INPUT_S`
s and every timeline) run one at a time and so never hold more than one slot; a short clip never
waits behind a long one, and on 2 cores two short clips run side by side. The model is in eval mode
and holds no state between calls (torch and onnxruntime may run it from two threads); silero-vad
keeps state, so each call takes its own from a pool (`audio._silero_model`). To use more cores, run more
processes (several `voxemo serve` instances behind a proxy, or uvicorn workers each building
their own app).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..audio import MIN_WINDOW, AudioError, audio_info, load_audio

MB = 1000 * 1000  # limits are in decimal megabytes, as a user reads "20 MB"
CHUNK = 1024 * 1024  # bytes copied from the upload to the temporary file at a time
MULTIPART_SLACK = 64 * 1024  # room for multipart headers and boundaries over the file's own size
READABLE_PREFIX = "not an audio file"  # AudioError problems that mean "soundfile cannot read this" -> 415
META_KEYS = ("corpora", "protocol", "n_train", "test_metrics", "test_protocol", "test_speakers", "licence",
             "validation_speakers", "validation_metrics", "cv_metrics", "members", "adapted")
MIN_HOP = 0.1  # s: the smallest timeline hop a request may ask for
MAX_WINDOWS = 2400  # timeline windows one request may ask for (10 minutes of speech at a 0.25 s hop)
BUDGET_S = 60.0  # s of work one request may take before it is answered 503
LONG_INPUT_S = 30.0  # recordings longer than this (and every timeline) run one at a time


# --- response bodies (they also document the API at /docs) -------------------------------------------

class Segment(BaseModel):
    start: float = Field(description="Seconds from the start of the recording.")
    end: float = Field(description="Seconds from the start of the recording.")
    label: str
    confidence: float = Field(description="Mean probability of `label` over the segment's windows.")
    probabilities: dict[str, float]


class Window(BaseModel):
    start: float
    end: float
    label: str
    probabilities: dict[str, float]


class Timeline(BaseModel):
    duration: float = Field(description="Seconds.")
    speech: list[list[float]] = Field(description="[start, end] of the speech regions found (all of it with vad=false).")
    windows: list[Window] = Field(description="Every analysis window (window s long, hop s apart) over speech.")
    segments: list[Segment] = Field(description="Adjacent windows of one speech region with the same label, merged.")


class Prediction(BaseModel):
    label: str | None = Field(description="The most probable class; null when there is no speech.")
    probabilities: dict[str, float] | None = Field(
        None, description="Probability of every class, in the model's label order; absent when there is no speech.")
    no_speech: bool = Field(False, description="True when voice activity found less speech than the model needs "
                                               "(noise, tones, silence, a very short clip): no emotion is given.")
    speech: float = Field(description="Seconds of speech voice activity found (32 ms frames at silero-vad's threshold).")
    duration: float = Field(description="Length of the uploaded recording in seconds.")
    timeline: Timeline | None = Field(None, description="Only when asked for with timeline=true.")


class Health(BaseModel):
    status: str
    version: str
    runtime: str


# --- the app -------------------------------------------------------------------------------------------

def create_app(predictor, *, max_upload_mb: float = 20, max_duration_s: float = 600,
               max_windows: int = MAX_WINDOWS, budget_s: float = BUDGET_S, slots: int | None = None,
               title: str = "voxemo") -> FastAPI:
    """A FastAPI app serving `predictor` (a `voxemo.predict.Predictor`); no server is started.

    max_upload_mb: largest accepted upload (MB; fractions allowed); larger ones get 413.
    max_duration_s: longest accepted recording (seconds); longer ones get 413.
    max_windows: most timeline windows one request may ask for (422 above).
    budget_s: seconds of waiting and inference one request may take (503 above).
    slots: inferences run at once (None: one per core, at least 2, so a long request never stops
        the short ones).
    """
    max_bytes = int(max_upload_mb * MB)
    pipe = predictor.pipeline
    sr = pipe.audio.sample_rate
    runtime = str(getattr(predictor, "runtime", "torch"))
    gate = Slots(slots or max(2, os.cpu_count() or 1))  # module docstring: Concurrency
    page = resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")

    app = FastAPI(title=title, version=__version__, docs_url=None,
                  description="Speech emotion recognition: upload a recording, get the emotion it expresses.")
    _offline_docs(app)
    app.state.predictor = predictor
    app.state.limits = {"max_upload_mb": max_upload_mb, "max_duration_s": max_duration_s,
                        "min_hop_s": MIN_HOP, "max_windows": max_windows, "budget_s": budget_s}
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_SLACK, paths={"/predict"},
                       message=f"upload too large: the limit is {_mb(max_upload_mb)}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse(page)

    @app.get("/health", response_model=Health)
    def health():
        """Liveness: the model is loaded and the service answers."""
        return {"status": "ok", "version": __version__, "runtime": runtime}

    @app.get("/model")
    def model() -> dict:
        """What the served model recognises and how it was trained and scored."""
        info = {"labels": list(pipe.labels), "task": pipe.task, "runtime": runtime,
                "model": pipe.name,
                "audio": dataclasses.asdict(pipe.audio), "voxemo_version": __version__,
                "limits": app.state.limits}
        info.update({k: pipe.meta[k] for k in META_KEYS if k in pipe.meta})
        return _plain(info)

    @app.post("/predict", response_model=Prediction, response_model_exclude_unset=True,
              responses={413: {"description": "Upload too large or recording too long."},
                         415: {"description": "Not an audio file soundfile can read."},
                         422: {"description": "No `file` field or more than one file, audio without a usable signal "
                                              "(empty, truncated, NaN), or a timeline asking for too many windows."},
                         503: {"description": "The request's time budget ran out (busy, or too much work): try again."}})
    def predict(
        file: list[UploadFile] = File(..., description="One recording in any format soundfile reads (WAV, FLAC, OGG, MP3, ...)."),
        timeline: bool = Query(False, description="Also return the timeline: windows, and segments of one emotion."),
        window: float = Query(2.0, ge=MIN_WINDOW, le=60, description="Timeline window length in seconds."),
        hop: float = Query(0.5, ge=MIN_HOP, le=60, description="Timeline hop between windows in seconds."),
        vad: bool = Query(True, description="Timeline: label only the parts with speech (silero-vad)."),
    ):
        """The emotion of an uploaded recording; with timeline=true, also how it changes over time.

        Runs in FastAPI's threadpool (a plain `def`), so the event loop is never blocked.
        """
        from ..predict import is_silence, no_speech

        deadline = time.monotonic() + budget_s
        if len(file) != 1:
            names = ", ".join(Path(f.filename or "upload").name for f in file)
            raise HTTPException(422, f"send one file per request in the field `file`; got {len(file)} ({names})")
        file = file[0]
        name = Path(file.filename or "upload").name or "upload"
        path = _save_upload(file, max_bytes, max_upload_mb, name)
        try:
            duration = 0.0
            if os.path.getsize(path) > 0:  # an empty file gets load_audio's own message below
                duration = _header_duration(path, name)
                if duration > max_duration_s:
                    raise HTTPException(413, f"{name}: recording too long ({duration:.1f} s); "
                                             f"the limit is {max_duration_s:g} s")
                asked = int(max(0.0, duration - window) // hop) + 2 if timeline else 0
                if asked > max_windows:
                    raise HTTPException(422, f"{name}: a timeline of {duration:.1f} s with hop {hop:g} s asks for up to "
                                             f"{asked} windows; the limit is {max_windows}: raise hop to at least "
                                             f"{max(MIN_HOP, duration / (max_windows - 2)):.2f} s or send a shorter recording")
            try:
                x = load_audio(path, sr)
            except AudioError as e:
                if not is_silence(e):
                    raise _audio_http_error(name, path, e) from None
                return _plain({**no_speech(0.0), "duration": duration})
            long = timeline or x.shape[0] > LONG_INPUT_S * sr
            if not gate.acquire(long, deadline):
                raise HTTPException(503, f"{name}: the service is busy; try again in a moment", headers={"Retry-After": "5"})
            try:
                budgeted = _budgeted(predictor, deadline)
                out = budgeted.predict(x, sr=sr)
                tl = budgeted.timeline(x, sr=sr, window=window, hop=hop, vad=vad) if timeline else None
            except OverBudget:
                raise HTTPException(503, f"{name}: not finished within the time budget of {budget_s:g} s; "
                                         f"send a shorter recording or a larger hop") from None
            except (AudioError, ValueError) as e:  # e.g. a clip too short for the model
                raise HTTPException(422, f"{name}: {getattr(e, 'problem', e)}") from None
            finally:
                gate.release(long)
                if long:
                    return_freed_memory()
        finally:
            os.unlink(path)
        body = {"no_speech": False, **out, "duration": x.shape[0] / sr}
        if tl is not None:
            body["timeline"] = tl
        return _plain(body)

    return app


class Slots:
    """`slots` inferences at once; long requests one at a time, so they hold at most one slot."""

    def __init__(self, slots: int):
        self.free = threading.BoundedSemaphore(slots)
        self.long = threading.Lock()

    def acquire(self, long: bool, deadline: float) -> bool:
        """Take a slot (and for a long request the long turn) before `deadline` (time.monotonic)."""
        if long and not self.long.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        if self.free.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return True
        if long:
            self.long.release()
        return False

    def release(self, long: bool) -> None:
        self.free.release()
        if long:
            self.long.release()


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where malloc is not glibc's."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Hand the pages that a long request's freed buffers left in malloc's free lists back to the system.
    glibc keeps them otherwise: after one 600 s timeline the torch server's RSS stayed 31 % above what it
    was before, 19 % with the trim (6 % once batches were bounded in samples; benchmarks/service_load.py)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class OverBudget(Exception):
    """A request's time budget ran out during inference."""


def _budgeted(predictor, deadline: float):
    """A shallow copy of `predictor` (same model) whose model calls raise OverBudget once `deadline`
    (time.monotonic) has passed: inference runs in batches, so a long request stops between two."""
    import copy

    out = copy.copy(predictor)
    run = predictor.run

    def checked(waves, member=0):
        if time.monotonic() > deadline:
            raise OverBudget
        return run(waves, member)

    out.run = checked
    return out


def _save_upload(file: UploadFile, max_bytes: int, max_upload_mb: float, name: str) -> str:
    """Copy the upload to a temporary file (keeping a plain extension), counting bytes; its path."""
    suffix = Path(name).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", Path(name).suffix) else ""
    tmp = tempfile.NamedTemporaryFile(prefix="voxemo-upload-", suffix=suffix, delete=False)
    try:
        with tmp:
            n = 0
            while chunk := file.file.read(CHUNK):
                n += len(chunk)
                if n > max_bytes:
                    raise HTTPException(413, f"{name}: upload too large: the limit is {_mb(max_upload_mb)}")
                tmp.write(chunk)
    except BaseException:
        os.unlink(tmp.name)
        raise
    return tmp.name


def _header_duration(path: str, name: str) -> float:
    try:
        duration, _, _ = audio_info(path)
    except AudioError as e:
        raise _audio_http_error(name, path, e) from None
    return duration


def _audio_http_error(name: str, path: str, e: AudioError) -> HTTPException:
    """415 when soundfile cannot read the file, 422 when it reads but holds no usable signal.

    The message names the uploaded file, never the temporary copy (soundfile's own text quotes it).
    """
    status = 415 if e.problem.startswith(READABLE_PREFIX) else 422
    return HTTPException(status, f"{name}: {e.problem.replace(path, name)}")


def _mb(x: float) -> str:
    return f"{x:g} MB" if x >= 1 else f"{x * 1000:g} kB"


def _plain(obj):
    """numpy scalars and arrays -> Python numbers and lists, recursively (for JSON)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class BodyLimit:
    """ASGI middleware: answer 413 to a request body above `limit` bytes before it is stored.

    Looks at Content-Length first; then counts the bytes as they arrive, so a chunked upload (no
    length) is cut off too: the app is told the client went away and its own answer is dropped.
    """

    def __init__(self, app, *, limit: int, paths: set[str], message: str):
        self.app, self.limit, self.paths, self.message = app, limit, paths, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        received, refused, started = 0, False, False

        async def counted_receive():
            nonlocal received, refused
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit and not started:
                    if not refused:
                        refused = True
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            nonlocal started
            if refused:
                return  # our 413 went out already
            started = True
            await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # the app's failure after our 413 (a disconnected client) is expected

    async def _refuse(self, send):
        import json

        body = json.dumps({"detail": self.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI served from the swagger-ui-bundle package, not a CDN (no network here)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")
