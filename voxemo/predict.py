"""Point a trained pipeline at audio: one clip, many files, a long recording, a live stream.

`Predictor` wraps a `Pipeline` (torch, or the same graph exported to ONNX and run in onnxruntime),
or a `fusion.Fusion` of pipelines (each member run so, their probabilities weighed). Every piece of
audio goes through the pipeline's `AudioSettings` (voxemo.audio), the same door as in training and
`voxemo evaluate`:

- A clip (`predict`): `audio.prepare`: decoded, silence trimmed as in training, the training crop
  (offset, duration); a long clip as windows of the training duration covering all of it, averaged.
  `voxemo evaluate` scores exactly these probabilities.
- A long recording (`timeline`): decoded with `audio.decode` but not trimmed (times must be the
  file's), voice activity with silero-vad, then windows of `window` seconds hopped by `hop` over
  speech only (`audio.window_starts`; a speech region shorter than a window gets one zero-padded
  window); per-window probabilities; adjacent windows of one speech region with the same top
  label merged into segments. Overlapping windows with different labels split at the midpoint of
  their overlap.
- A live stream (`StreamListener`): silero-vad frame by frame on a rolling buffer; each speech
  segment, once followed by `min_silence` of non-speech, is classified like one timeline region
  (its windows' mean).

A model that only takes its training length (a Flatten sized for it, or a per-window front-end;
see `export.takes_any_length`, and for ONNX the file's `input_samples`) gets every timeline or
stream piece longer than that length as training-length windows, averaged, and shorter pieces
zero-padded.

Letters: B batch, N samples, K classes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch

from .audio import (CLIP_TAIL, MIN_WINDOW, SILENCE_PEAK, VAD_SAMPLE_RATE, AudioError, audio_info, fit,
                    resample, speech_seconds, speech_segments, window_starts)
from .pipeline import Pipeline, PipelineError, clip_probabilities, pipeline_files

if TYPE_CHECKING:
    from .fusion import Fusion

RUNTIMES = ("torch", "onnx", "onnx-int8")  # onnx-int8: the ONNX graph, large matrix products in int8
BATCH_SIZE = 32  # windows per forward pass
TIMELINE_MIN_SILENCE = 0.3  # s of non-speech that separate two speech regions of a timeline
ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED_MODELS = {  # name -> pipeline path (+ .json / .safetensors) of the models that ship inside voxemo
    "voxemo_whisper": ASSETS / "voxemo_whisper" / "voxemo_whisper",  # the default: a head on frozen Whisper base
    "voxemo_net": ASSETS / "voxemo_net" / "voxemo_net",  # the small, fastest model: a CNN + BiGRU from scratch
}
DEFAULT_MODEL = "voxemo_whisper"
BUNDLED = BUNDLED_MODELS[DEFAULT_MODEL]


def _named(labels: Sequence[str], p: np.ndarray) -> dict[str, float]:
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    return {label: float(v) for label, v in zip(labels, p)}


class Predictor:
    """A pipeline, or a fusion of pipelines (`voxemo.fusion`), ready to classify audio.

    runtime: "torch" runs the pipeline itself; "onnx" runs the same graph in onnxruntime, from
        `onnx_path` (a `voxemo export` file of this pipeline) or, without one, from an export made
        on the fly into a temporary folder (a fusion: one per member); "onnx-int8" the same with the
        graph's large matrix products in int8 (`export.quantize_int8`; `voxemo export --int8` writes
        such a file; its labels against the float graph's: `benchmarks/quantization.py`). threads: onnxruntime's
        intra-op threads (1 by default, so a server's workers do not fight over cores); torch keeps
        its own setting.

    A fusion is run member by member: each member cuts the decoded clip into its own windows and
    runs them (`run(waves, member)`), and the members' probabilities are weighed (`Fusion.weights`).
    """

    def __init__(self, pipeline: "Pipeline | Fusion", runtime: str = "torch", onnx_path: str | os.PathLike | None = None,
                 *, threads: int = 1):
        from .export import fixed_samples, takes_any_length

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        if pipeline.speaker_norm:
            raise PipelineError("the pipeline normalises each speaker with their own statistics over several clips, "
                                "so it cannot label one clip: score it on a corpus with `voxemo evaluate`")
        self.pipeline = pipeline.eval()
        self.members: list[Pipeline] = list(getattr(pipeline, "members", [pipeline]))
        self.weights: list[float] = list(getattr(pipeline, "weights", [1.0]))
        self.runtime = runtime
        self.sample_rate = pipeline.audio.sample_rate
        self.onnx = None  # one OnnxRunner per member
        if runtime.startswith("onnx"):
            if onnx_path is not None and len(self.members) > 1:
                raise PipelineError("a fusion runs one ONNX graph per member, exported on the fly: leave out the ONNX file")
            self.onnx = [self._open_onnx(m, onnx_path, threads) for m in self.members]
            self.input_samples = [runner.input_samples for runner in self.onnx]
        else:
            self.input_samples = [None if takes_any_length(m) else fixed_samples(m) for m in self.members]

    def _open_onnx(self, pipeline: Pipeline, onnx_path, threads):
        from .export import OnnxRunner, export_onnx

        if onnx_path is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="voxemo-onnx-") as tmp:
                path = Path(tmp) / "pipeline.onnx"
                export_onnx(pipeline, path, int8=self.runtime == "onnx-int8")
                return OnnxRunner(path, threads)  # the session holds the graph; the file can go
        runner = OnnxRunner(onnx_path, threads)
        if runner.labels != pipeline.labels or runner.sample_rate != self.sample_rate:
            raise PipelineError(f"{onnx_path}: exported from another pipeline (labels {runner.labels}, "
                                f"{runner.sample_rate} Hz; this one has {pipeline.labels}, {self.sample_rate} Hz)")
        if runner.int8 != (self.runtime == "onnx-int8"):
            raise PipelineError(f"{onnx_path}: its matrix products are {'int8' if runner.int8 else 'float'}; "
                                f"run it with --runtime {'onnx-int8' if runner.int8 else 'onnx'}")
        return runner

    @property
    def labels(self) -> list[str]:
        return list(self.pipeline.labels)

    @property
    def audio(self):
        """How every clip is decoded (the pipeline's AudioSettings; each member of a fusion cuts its own windows)."""
        return self.pipeline.audio

    # --- the model ------------------------------------------------------------------------------
    def run(self, waves: np.ndarray, member: int = 0) -> np.ndarray:
        """Equal-length windows (b, N) float32 at `sample_rate` -> probabilities (b, K), of one member."""
        return self.onnx[member].run(waves) if self.onnx is not None else self.members[member].run(waves)

    def _weighed(self, windows_of) -> np.ndarray:
        """The weighted sum over members of `clip_probabilities` of the windows `windows_of(i)` gives member i."""
        return sum(w * clip_probabilities(lambda waves, i=i: self.run(waves, i), windows_of(i), len(self.labels), BATCH_SIZE)
                   for i, w in enumerate(self.weights))

    def hear(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded clips (`audio.decode`) -> probabilities (B, K): `Pipeline.hear` (each member's
        `audio.windows`, windows averaged, members weighed), on either runtime."""
        return self._weighed(lambda i: [self.members[i].audio.windows(x) for x in clips])

    def _pieces_probabilities(self, pieces: Sequence[np.ndarray], length: int) -> np.ndarray:
        """Probabilities (P, K) of timeline or stream pieces, each zero-padded to `length` samples;
        for a model that takes only its training length n, each piece is cut into n-sample windows
        (hop n / 2), whose probabilities are averaged."""
        def windows(i):
            n = self.input_samples[i]
            if n is None:
                return [fit(piece, length)[None, :] for piece in pieces]
            return [np.stack([fit(piece[s : s + n], n) for s in window_starts(piece.shape[0], n, n // 2, int(CLIP_TAIL * n))])
                    for piece in pieces]

        return self._weighed(windows)

    # --- clips ----------------------------------------------------------------------------------
    def predict(self, source, sr: int | None = None) -> dict:
        """One clip (a path, or an array with its rate `sr`) -> {"label", "probabilities": {label: p},
        "speech": seconds of speech}, prepared by the pipeline's `audio.prepare` as in training and
        evaluation; or, when voice activity finds no speech (`audio.speech_seconds` is 0: noise, tones,
        silence, a clip shorter than `MIN_SPEECH`), the no-speech record {"label": None, "no_speech": True, "speech"}
        (`no_speech`): a result, not an error, and no emotion. Raises AudioError for unusable audio
        (unreadable, truncated, empty, NaN)."""
        try:
            x = self.audio.decode(source, sr)
        except AudioError as e:
            if is_silence(e):
                return no_speech(0.0)
            raise
        speech = speech_seconds(x, self.sample_rate)
        if speech == 0.0:
            return no_speech(speech)
        p = self.hear([x])[0]
        return {"label": self.labels[int(np.argmax(p))], "probabilities": _named(self.labels, p), "speech": round(speech, 2)}

    def predict_many(self, paths: Iterable[str | os.PathLike], progress: Callable[[int], None] | None = None) -> list[dict]:
        """Each path -> {"path", **predict(path)} (an emotion or the no-speech record) or {"path",
        "error"} (the AudioError text, naming the file); a file that cannot be used never stops the
        others. `progress(1)` after each."""
        out = []
        for path in paths:
            try:
                out.append({"path": str(path), **self.predict(path)})
            except AudioError as e:
                out.append({"path": str(path), "error": str(e)})
            if progress:
                progress(1)
        return out

    # --- long recordings ------------------------------------------------------------------------
    def timeline(self, source, sr: int | None = None, window: float = 2.0, hop: float = 0.5, vad: bool = True) -> dict:
        """A long recording -> {"duration", "speech", "windows", "segments"} (seconds throughout).

        speech: [start, end] regions found by voice activity detection (the whole recording when
            `vad` is off); windows: {"start", "end", "label", "probabilities"}, `window` s hopped by
            `hop` s over speech only; segments: {"start", "end", "label", "confidence" (mean top
            probability), "probabilities" (mean)} of adjacent windows sharing their top label.
        A silent recording gives empty lists, not an error.
        """
        if window < MIN_WINDOW or hop <= 0:
            raise ValueError(f"window must be at least {MIN_WINDOW:g} s and hop positive (got {window:g} s, {hop:g} s)")
        try:
            x = dataclasses.replace(self.audio, trim=None).decode(source, sr)  # times are the recording's
        except AudioError as e:
            if not is_silence(e):
                raise
            duration = audio_info(source)[0] if isinstance(source, (str, os.PathLike)) else len(source) / sr
            return {"duration": round(duration, 3), "speech": [], "windows": [], "segments": []}
        rate = self.sample_rate
        total = x.shape[0] / rate
        regions = speech_segments(x, rate, min_silence=TIMELINE_MIN_SILENCE) if vad else [(0.0, total)]
        win, step = int(round(window * rate)), max(1, int(round(hop * rate)))
        spans = []  # (region, start sample, end sample)
        for r, (s, e) in enumerate(regions):
            a, b = int(s * rate), min(x.shape[0], int(math.ceil(e * rate)))
            spans += [(r, a + t, min(a + t + win, b)) for t in window_starts(b - a, win, step)] if b > a else []
        probs = self._pieces_probabilities([x[a:b] for _, a, b in spans], win)
        windows = [{"start": round(a / rate, 3), "end": round(b / rate, 3), "label": self.labels[int(np.argmax(p))],
                    "probabilities": _named(self.labels, p)} for (_, a, b), p in zip(spans, probs)]
        segments = merge_windows(windows, [r for r, _, _ in spans], self.labels)
        return {"duration": round(total, 3), "speech": [[round(s, 3), round(e, 3)] for s, e in regions],
                "windows": windows, "segments": segments}

    def segment(self, x: np.ndarray, window: float = 2.0, hop: float = 0.5) -> dict:
        """One speech segment at the pipeline's rate -> {"label", "confidence", "probabilities"}:
        the mean over its timeline windows (one zero-padded window when shorter than `window`)."""
        win, step = int(round(window * self.sample_rate)), max(1, int(round(hop * self.sample_rate)))
        pieces = [x[s : s + win] for s in window_starts(x.shape[0], win, step)]
        p = self._pieces_probabilities(pieces, win).mean(0)
        named = _named(self.labels, p)
        label = self.labels[int(np.argmax(p))]
        return {"label": label, "confidence": round(named[label], 4), "probabilities": named}


def no_speech(speech: float) -> dict:
    """The record of a clip without speech (`audio.speech_seconds`): no label, no probabilities."""
    return {"label": None, "no_speech": True, "speech": round(float(speech), 2)}


def is_silence(e: AudioError) -> bool:
    """An AudioError that only says the signal is silent: no speech, not a broken file."""
    return e.problem.startswith("signal is silent")


def merge_windows(windows: list[dict], regions: list[int], labels: Sequence[str]) -> list[dict]:
    """Adjacent windows of one speech region with the same top label -> segments."""
    segs: list[dict] = []
    for w, r in zip(windows, regions):
        top = w["probabilities"][w["label"]]
        probs = np.array([w["probabilities"][k] for k in labels])
        last = segs[-1] if segs else None
        if last is not None and last["_region"] == r and last["label"] == w["label"]:
            last["end"] = max(last["end"], w["end"])
            last["_top"].append(top)
            last["_p"].append(probs)
            continue
        start = w["start"]
        if last is not None and last["_region"] == r and w["start"] < last["end"]:
            start = round((w["start"] + last["end"]) / 2, 3)  # overlapping windows: split the overlap
            last["end"] = start
        segs.append({"start": start, "end": w["end"], "label": w["label"], "_region": r, "_top": [top], "_p": [probs]})
    return [{"start": s["start"], "end": s["end"], "label": s["label"], "confidence": round(float(np.mean(s["_top"])), 4),
             "probabilities": _named(labels, np.mean(s["_p"], axis=0))} for s in segs]


# --- live streams ------------------------------------------------------------------------------


class StreamListener:
    """Audio arriving in chunks (a microphone) -> one result per speech segment, as each ends.

    `feed(chunk)` takes float32 mono samples at `sr` Hz of any size and returns the segments that
    finished in it: {"start", "end" (seconds since the first sample fed), "label", "confidence",
    "probabilities"}; `flush()` ends the stream and returns a segment still open.

    Voice activity: silero-vad on 32 ms frames at 16 kHz (`audio.VoiceActivity`), with hysteresis
    as silero's own streaming iterator: speech starts at a frame whose probability reaches
    `threshold` and ends after `min_silence` s below `threshold - 0.15`; `pad` s of audio are kept on
    both sides; segments shorter than `min_speech` s are dropped; one that runs past `max_segment`
    s is reported and a new one begins. The rolling buffer holds the open segment and `pad` s
    before it, nothing more. Each segment is classified by `Predictor.segment` (windows of
    `window` s hopped by `hop` s, averaged).
    """

    def __init__(self, predictor: Predictor, sr: int = VAD_SAMPLE_RATE, *, window: float = 2.0, hop: float = 0.5,
                 threshold: float = 0.5, min_silence: float = 0.5, min_speech: float = 0.25, pad: float = 0.1,
                 max_segment: float = 15.0):
        from .audio import VoiceActivity

        if window < MIN_WINDOW or hop <= 0:
            raise ValueError(f"window must be at least {MIN_WINDOW:g} s and hop positive (got {window:g} s, {hop:g} s)")
        self.predictor = predictor
        self.sr = int(sr)
        self.window, self.hop = window, hop
        self.threshold, self.pad = threshold, int(pad * VAD_SAMPLE_RATE)
        self.min_silence, self.min_speech = int(min_silence * VAD_SAMPLE_RATE), int(min_speech * VAD_SAMPLE_RATE)
        self.max_segment = int(max_segment * VAD_SAMPLE_RATE)
        self.vad = VoiceActivity()
        self.frame = VoiceActivity.FRAME
        self._resampler = None
        if self.sr != VAD_SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.sr, VAD_SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._pending = np.zeros(0, np.float32)  # 16 kHz samples not yet a whole frame
        self._buf = np.zeros(0, np.float32)  # 16 kHz samples from _buf_start on
        self._buf_start = 0  # absolute 16 kHz sample index of _buf[0]
        self._now = 0  # absolute index of the next frame's first sample
        self._start: int | None = None  # open segment's first sample
        self._silence = 0  # samples of non-speech since the last speech frame of the open segment

    def feed(self, chunk: np.ndarray) -> list[dict]:
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return self._frames(x)

    def flush(self) -> list[dict]:
        """End of the stream: the open segment (if any) ends at the last sample fed."""
        out = []
        if self._resampler is not None:
            out += self._frames(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        if self._pending.size:
            self._buf = np.concatenate([self._buf, self._pending])
            self._now += self._pending.size
            self._pending = np.zeros(0, np.float32)
        if self._start is not None:
            out += self._emit(self._start, self._now - self._silence + min(self._silence, self.pad))
            self._start = None
        self.vad.reset()
        return out

    def _frames(self, x: np.ndarray) -> list[dict]:
        x = np.concatenate([self._pending, x])
        n = (x.shape[0] // self.frame) * self.frame
        self._pending = x[n:]
        self._buf = np.concatenate([self._buf, x[:n]])
        out = []
        for i in range(0, n, self.frame):
            out += self._step(self.vad.prob(x[i : i + self.frame]))
        return out

    def _step(self, p: float) -> list[dict]:
        """One frame (at self._now) with speech probability p."""
        out = []
        frame_start = self._now
        self._now += self.frame
        if self._start is None:
            if p >= self.threshold:
                self._start = max(self._buf_start, frame_start - self.pad)
                self._silence = 0
            else:
                self._trim(self._now - self.pad)
            return out
        if p >= self.threshold:
            self._silence = 0
        elif p < self.threshold - 0.15:
            self._silence += self.frame
        if self._silence >= self.min_silence:
            out += self._emit(self._start, self._now - self._silence + self.pad)
            self._start = None
            self._trim(self._now - self.pad)
        elif self._now - self._start >= self.max_segment:
            out += self._emit(self._start, self._now)
            self._start = self._now
            self._trim(self._start - self.pad)
        return out

    def _emit(self, start: int, end: int) -> list[dict]:
        end = min(end, self._buf_start + self._buf.shape[0])
        if end - start < self.min_speech:
            return []
        x = self._buf[start - self._buf_start : end - self._buf_start]
        x = resample(x, VAD_SAMPLE_RATE, self.predictor.sample_rate)
        if float(np.max(np.abs(x), initial=0.0)) < SILENCE_PEAK:
            return []
        result = self.predictor.segment(x, self.window, self.hop)
        return [{"start": round(start / VAD_SAMPLE_RATE, 3), "end": round(end / VAD_SAMPLE_RATE, 3), **result}]

    def _trim(self, keep_from: int) -> None:
        cut = keep_from - self._buf_start
        if cut > 0:
            self._buf = self._buf[cut:]
            self._buf_start = keep_from


# --- loading and plotting ----------------------------------------------------------------------


def resolve_model(path: str | os.PathLike | None) -> Path:
    """A pipeline path from what a user names: None (the default bundled model), a bundled model's
    name (`BUNDLED_MODELS`), a pipeline path P (P.json + P.safetensors), or a folder holding one."""
    if path is None or str(path) in BUNDLED_MODELS:
        bundled = BUNDLED_MODELS[DEFAULT_MODEL if path is None else str(path)]
        weights, config = pipeline_files(bundled)
        if not (weights.is_file() and config.is_file()):
            raise PipelineError(f"no bundled model in this installation: {bundled.parent} holds no "
                                f"{config.name} and {weights.name}; pass the path of a pipeline "
                                f"(written by `voxemo train ... --out PATH`)")
        return bundled
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("*.json"))
        if len(found) == 1 and found[0].with_suffix(".safetensors").is_file():
            return found[0].with_suffix("")
    return p


def load_model(path: str | os.PathLike | None = None, runtime: str = "torch", *,
               onnx_path: str | os.PathLike | None = None, threads: int = 1,
               encoder: str | os.PathLike | None = None) -> Predictor:
    """A Predictor for a saved pipeline (`path` = P for P.json + P.safetensors, or a folder holding
    one), a fusion's folder (`voxemo fuse`), a bundled model by name ("voxemo_whisper",
    "voxemo_net"), or with no path the default bundled model. `encoder`: a local copy of the
    pretrained encoder a Whisper pipeline needs (default: its pinned packages). Raises PipelineError."""
    from .fusion import load_pipeline_or_fusion

    where = resolve_model(path)
    pipe = load_pipeline_or_fusion(where, encoder)
    try:
        return Predictor(pipe, runtime, onnx_path, threads=threads)
    except PipelineError as e:  # name the model file too
        raise PipelineError(f"{where}: {e}") from None


def plot_timeline(timeline: dict, out_png: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write a PNG: the per-class probabilities of the windows, stacked, over time (zero in
    silence), and the segments as labelled bars below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows, segments = timeline["windows"], timeline["segments"]
    labels = list(windows[0]["probabilities"]) if windows else []
    colors = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(labels)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True, height_ratios=(3, 1),
                                      constrained_layout=True)
    if windows:
        xs, ys = [], []
        zero = np.zeros(len(labels))
        for i, w in enumerate(windows):
            p = np.array([w["probabilities"][k] for k in labels])
            if i == 0 or w["start"] > windows[i - 1]["end"]:  # a run of windows begins after silence
                if xs:
                    xs += [windows[i - 1]["end"]] * 2
                    ys += [ys[-1], zero]
                xs += [w["start"]] * 2
                ys += [zero, p]
            xs.append((w["start"] + w["end"]) / 2)
            ys.append(p)
        xs += [windows[-1]["end"]] * 2
        ys += [ys[-1], zero]
        top.stackplot(xs, np.array(ys).T, labels=labels, colors=[colors[k] for k in labels], alpha=0.85)
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    else:
        top.text(0.5, 0.5, "no speech found", ha="center", va="center", transform=top.transAxes)
    top.set_ylim(0, 1)
    top.set_ylabel("probability")
    for s in segments:
        bottom.broken_barh([(s["start"], s["end"] - s["start"])], (0, 1), color=colors.get(s["label"], "grey"))
        bottom.text((s["start"] + s["end"]) / 2, 0.5, s["label"], ha="center", va="center", fontsize=7, clip_on=True)
    bottom.set_yticks([])
    bottom.set_ylabel("segments")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, max(timeline["duration"], 1e-3))
    if title:
        top.set_title(title, fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
