"""Audio in: the only module that opens files, and the one door every clip goes through.

`load_audio` turns any file soundfile reads (WAV, FLAC, AIFF, OGG, MP3, ...) into float32 mono at the
requested rate, and turns every failure into one error type, `AudioError`, whose message names the
file and the problem. The rest of this module works on arrays: crop/pad to a fixed window, energy
trimming, and voice activity with silero-vad (its model ships inside the wheel: no network).

`AudioSettings` is the one preparation of a clip, saved with every pipeline. Training, validation,
evaluation, `voxemo predict`, the HTTP service and the ONNX export's documented input all go through
it, so what was measured is what a user gets:

    file or array --decode--> mono float32 at sample_rate, silence trimmed (`trim`)   (cached on disk)
                  --crop-->    the training crop: skip `offset`, keep `duration` s, zero-padded
                  --windows--> what the model hears at evaluation and prediction (C, N): the
                               training crop, or for a long clip windows covering all of it

A clip no longer than `offset + LONG_CLIP * duration` is heard as exactly the training crop; a
longer one (a recording, not a corpus clip) is cut into `duration`-long windows hopped by half a
window, plus one window ending at its end when more than a quarter window is left over, and its
probabilities are the mean of its windows'. The offset is skipped only when at least
`MIN_WINDOW` s remain after it. With `duration=None` a clip is heard whole (zero-padded to
`MIN_WINDOW` s), up to `WHOLE_CLIP_MAX` s; a longer recording as windows of that length, hopped by
half of it. Long recordings (`Predictor.timeline`) and live streams decode with the same
`decode` and cut windows over detected speech with the same `window_starts`.

Letters: C windows of a clip, N samples.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # the rate every model in voxemo works at
SILENCE_PEAK = 1e-4  # a signal whose absolute peak stays below this is treated as silent (-80 dBFS)
VAD_SAMPLE_RATE = 16000  # silero-vad works at 8 or 16 kHz; we always give it 16 kHz
MIN_WINDOW = 0.5  # s: the shortest piece of audio a model is given (the CNN front ends need a few frames)
LONG_CLIP = 2.0  # a clip longer than offset + LONG_CLIP * duration is heard as windows, not one crop
CLIP_TAIL = 0.25  # a long clip's leftover after its last full window gets a window past this fraction of one
WHOLE_CLIP_MAX = 30.0  # s: with no fixed duration a clip up to this long is heard whole (Whisper's window)
MIN_SAMPLE_RATE = 4000  # Hz: below this a file cannot hold speech (and would resample into days of samples)
MIN_SPEECH = 0.25  # s: a clip shorter than this is "no speech" (too short to hold a word), not given an emotion
SPEECH_PROB = 0.15  # silero-vad speech probability; a clip none of whose 32 ms frames reaches it is "no speech"
TRUNCATED_SHARE = 0.9  # a file holding less than this share of the frames its header declares is truncated
STREAMING_SIZE = 0xFFFFFF00  # a WAV data size at or above this is a streaming writer's placeholder, not a length


class AudioError(Exception):
    """A file could not be turned into a usable signal. `str(err)` is "<path>: <problem>"."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def check_signal(x: np.ndarray, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Raise `AudioError` if `x` is empty, holds NaN/inf, or is silent; return it unchanged otherwise."""
    if x.size == 0:
        raise AudioError(source, "zero-length signal (no samples)")
    if not np.all(np.isfinite(x)):
        raise AudioError(source, "signal contains NaN or infinite samples")
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise AudioError(source, "signal is silent (peak below -80 dBFS)")
    return x


def check_rate(sr, source: str | os.PathLike = "<array>") -> int:
    """The sample rate as an int; AudioError below `MIN_SAMPLE_RATE` or not a whole positive number."""
    try:
        rate = int(sr)
    except (TypeError, ValueError, OverflowError):
        rate = 0
    if rate != sr or rate < MIN_SAMPLE_RATE:
        raise AudioError(source, f"sample rate {sr!r} Hz is not usable: speech needs at least {MIN_SAMPLE_RATE} Hz")
    return rate


def to_mono(x: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) -> (N,), averaging channels."""
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal with soxr (high quality); a no-op when the rates agree."""
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike,
    sr: int = SAMPLE_RATE,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    min_duration: float = 0.0,
    trim: str | None = None,
) -> np.ndarray:
    """Decode `path` to float32 mono at `sr` Hz.

    offset, duration: seconds; when `duration` is given the result is exactly `duration * sr` samples,
        zero-padded at the end if the file is shorter (the papers use offset 0.5 s, duration 3 s).
    min_duration: seconds; a file shorter than this (before cropping) raises `AudioError`.
    trim: None, "energy" (`trim_energy`) or "vad" (`trim_vad`): cut leading and trailing silence
        before the offset and duration are applied.
    Raises AudioError for a missing, empty, unreadable, zero-length, too short, silent or
    non-finite file.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "file not found")
    if p.is_dir():
        raise AudioError(p, "is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    x, sr_in = _read(p)
    check_rate(sr_in, p)
    x = to_mono(np.asarray(x, dtype=np.float32))
    check_signal(x, p)
    if min_duration and x.shape[0] / sr_in < min_duration:
        raise AudioError(p, f"too short ({x.shape[0] / sr_in:.3f} s, at least {min_duration:g} s needed)")
    x = resample(x, sr_in, sr)
    if trim is not None:
        if trim not in TRIMMERS:
            raise ValueError(f"trim must be one of {sorted(TRIMMERS)} or None, not {trim!r}")
        x = TRIMMERS[trim](x, sr)
    if offset or duration is not None:
        x = crop_pad(x, sr, offset=offset, duration=duration)
    return np.ascontiguousarray(x, dtype=np.float32)


def _read(p: Path) -> tuple[np.ndarray, int]:
    """sf.read with libsndfile's failures as AudioError, the decoders' own stderr chatter kept off the
    user's terminal, and a file shorter than its header says refused as truncated."""
    errors = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError, OverflowError)
    with quiet_decoders():
        try:
            info = sf.info(str(p))
        except errors as e:
            raise AudioError(p, f"{READ_ERROR} ({_libsndfile_message(e)})") from None
        try:
            x, sr_in = sf.read(str(p), dtype="float32", always_2d=False)
        except errors as e:  # the header read, the data did not: cut short or damaged
            raise AudioError(p, f"truncated or damaged: header says {info.frames / max(info.samplerate, 1):.2f} s, "
                                f"the data cannot be decoded ({_libsndfile_message(e)})") from None
    problem = truncation(info, np.shape(x)[0])
    if problem:
        raise AudioError(p, problem)
    return x, sr_in


READ_ERROR = "not an audio file soundfile can read"


def _libsndfile_message(e: Exception) -> str:
    """libsndfile's text without the path it quotes, and its "does not exist ... (possibly a pipe?)"
    (what it says about content it does not recognise) said plainly."""
    text = str(getattr(e, "error_string", "") or e)
    if "possibly a pipe" in text or "File does not exist" in text:
        return "format not recognised"
    return re.sub(r"^Error opening '.*?': ", "", text)


def truncation(info, frames_read: int) -> str | None:
    """"truncated: header says X s, file holds Y s" when a file ends before the data its header
    declares (libsndfile reads such a file silently, with fewer frames), else None.

    WAV/AIFF: libsndfile's log says "data : <declared> (should be <present>)"; Ogg: "File ended
    unexpectedly"; MP3 and others: fewer frames decoded than the header counts.
    """
    log = getattr(info, "extra_info", "") or ""
    rate = max(int(info.samplerate), 1)
    held = frames_read / rate
    m = re.search(r"^(?:data|SSND)\s*:\s*(\d+) \(should be (\d+)\)", log, re.M)
    per_sec = re.search(r"Bytes/sec\s*:\s*(\d+)", log)
    if m and per_sec and int(per_sec.group(1)) > 0:
        declared, present = int(m.group(1)), int(m.group(2))
        if present < declared < STREAMING_SIZE:
            return f"truncated: header says {declared / int(per_sec.group(1)):.2f} s, file holds {held:.2f} s"
    if "File ended unexpectedly" in log:
        return f"truncated: the stream ends without its end marker, file holds {held:.2f} s"
    if 0 < frames_read < TRUNCATED_SHARE * info.frames or (frames_read == 0 and info.frames > 0):
        return f"truncated: header says {info.frames / rate:.2f} s, file holds {held:.2f} s"
    return None


DECODER_CHATTER = re.compile(rb"^(Note|Warning|Error|\[[^\]]*libmpg123[^\]]*\])[: ]")  # libmpg123's stderr lines
_quiet = {"depth": 0, "saved": None, "file": None}
_quiet_lock = threading.Lock()


@contextmanager
def quiet_decoders():
    """Hold C-level stderr (fd 2) in a temporary file while libsndfile runs, then pass on every line
    that is not a decoder's "Note:"/"Warning:" chatter (libmpg123 prints them on content it cannot
    sync to), so a user sees voxemo's one-line error and nothing else. Re-entrant and thread-safe:
    the first decoder in redirects, the last one out restores."""
    with _quiet_lock:
        if _quiet["depth"] == 0:
            try:
                sys.stderr.flush()
                saved, held = os.dup(2), tempfile.TemporaryFile()
                os.dup2(held.fileno(), 2)
                _quiet.update(saved=saved, file=held)
            except OSError:  # no fd 2 to redirect: nothing to hide
                _quiet.update(saved=None, file=None)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0 and _quiet["saved"] is not None:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])
                held = _quiet["file"]
                held.seek(0)
                kept = b"".join(line for line in held.read().splitlines(keepends=True) if not DECODER_CHATTER.match(line))
                held.close()
                _quiet.update(saved=None, file=None)
                if kept:
                    os.write(2, kept)


def crop_pad(x: np.ndarray, sr: int, *, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Skip `offset` seconds, then keep `duration` seconds, zero-padding at the end when short."""
    start = int(round(offset * sr))
    x = x[start:]
    if duration is None:
        return x
    n = int(round(duration * sr))
    if x.shape[0] >= n:
        return x[:n]
    return np.pad(x, (0, n - x.shape[0]))


def trim_energy(x: np.ndarray, sr: int, *, top_db: float = 30.0, frame: float = 0.025, hop: float = 0.010) -> np.ndarray:
    """Cut leading and trailing frames whose RMS is more than `top_db` below the loudest frame.

    The same rule as librosa.effects.trim (RMS per frame relative to the maximum), on numpy only.
    """
    n_frame, n_hop = int(frame * sr), int(hop * sr)
    if x.shape[0] <= n_frame:
        return x
    frames = np.lib.stride_tricks.sliding_window_view(x, n_frame)[::n_hop]  # (T, n_frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return x
    return x[loud[0] * n_hop : min(x.shape[0], loud[-1] * n_hop + n_frame)]


def speech_segments(x: np.ndarray, sr: int, *, threshold: float = 0.5, min_silence: float = 0.1) -> list[tuple[float, float]]:
    """Voice activity with silero-vad: a list of (start, end) seconds of speech in `x`."""
    import torch
    from silero_vad import get_speech_timestamps

    x16 = resample(x, sr, VAD_SAMPLE_RATE)
    with _silero_model() as model:
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(x16)),
            model,
            sampling_rate=VAD_SAMPLE_RATE,
            threshold=threshold,
            min_silence_duration_ms=int(min_silence * 1000),
        )
    return [(s["start"] / VAD_SAMPLE_RATE, s["end"] / VAD_SAMPLE_RATE) for s in stamps]


def trim_vad(x: np.ndarray, sr: int, **vad_options) -> np.ndarray:
    """Keep from the first to the last sample of detected speech; `x` unchanged if none is found."""
    segments = speech_segments(x, sr, **vad_options)
    if not segments:
        return x
    return x[int(segments[0][0] * sr) : int(np.ceil(segments[-1][1] * sr))]


_SILERO_POOL: list = []  # idle silero-vad models; one is taken per call, so no two threads share one
_SILERO_LOCK = threading.Lock()


@contextmanager
def _silero_model():
    """A silero-vad model from the installed package (no network), for this call only: it keeps
    state from frame to frame, so concurrent callers (a server's requests) each take their own from
    a pool, which grows only to the number of calls ever running at once."""
    with _SILERO_LOCK:
        model = _SILERO_POOL.pop() if _SILERO_POOL else None
    if model is None:
        from silero_vad import load_silero_vad

        model = load_silero_vad(onnx=_has_onnxruntime())
    try:
        model.reset_states()
        yield model
    finally:
        model.reset_states()
        with _SILERO_LOCK:
            _SILERO_POOL.append(model)


def _has_onnxruntime() -> bool:
    """silero-vad ships its model twice; the ONNX copy runs a 32 ms frame faster than the TorchScript
    one with the same probabilities up to float rounding (`benchmarks/no_speech_gate.py` finds the
    same 0 of 2984 real clips without speech). It needs onnxruntime (voxemo[onnx]), else the
    TorchScript copy is used."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def speech_seconds(x: np.ndarray, sr: int) -> float:
    """Seconds of `x` in 32 ms frames whose silero-vad speech probability reaches `SPEECH_PROB`; 0.0
    for a clip shorter than `MIN_SPEECH`. Zero means "no speech": no emotion is given.

    Why single frames at a low threshold and not `speech_segments` (silero's 0.5, runs of 250 ms):
    silero-vad hears shouted or sobbed RAVDESS lines poorly: 14 of its 1440 speech clips have no
    250 ms run at 0.5, 5 have no frame at 0.5, and the lowest clip peaks at 0.21. Noise (white,
    brown, amplitude-modulated), DC, square waves, tones and vibrato stay below 0.05 in every
    frame of two minutes; noise bursts reach 0.14. Harmonic hum and chirps can reach 0.8 and are
    heard as speech: the gate catches non-speech of the kinds in issue 13, not every sound.
    (benchmarks/no_speech_gate.py measures this on the real corpora.) Sung clips count as speech.
    """
    if x.shape[0] < MIN_SPEECH * sr:
        return 0.0
    probs = speech_probabilities(x, sr)
    return float((probs >= SPEECH_PROB).sum() * VoiceActivity.FRAME / VAD_SAMPLE_RATE)


def speech_probabilities(x: np.ndarray, sr: int) -> np.ndarray:
    """silero-vad's speech probability of each whole 32 ms frame of `x` (resampled to 16 kHz), in order."""
    import torch

    x16 = np.ascontiguousarray(resample(x, sr, VAD_SAMPLE_RATE), dtype=np.float32)
    n = VoiceActivity.FRAME
    frames = x16[: x16.shape[0] // n * n].reshape(-1, n)
    with _silero_model() as model:
        if hasattr(model, "session"):  # the ONNX copy: its session directly (`_silero_onnx_frames`)
            return _silero_onnx_frames(model.session, frames)
        with torch.inference_mode():
            return np.array([float(model(torch.from_numpy(frame), VAD_SAMPLE_RATE)) for frame in frames], np.float32)


SILERO_CONTEXT = 64  # samples of the previous frame silero-vad's ONNX model sees before each 512-sample frame


def _silero_onnx_frames(session, frames: np.ndarray) -> np.ndarray:
    """silero-vad's ONNX model over consecutive frames (F, 512) at 16 kHz -> probabilities (F,).

    The same computation as silero-vad's `OnnxWrapper.__call__` frame after frame (the previous
    frame's last 64 samples in front, the recurrent state carried), without its per-frame torch
    conversions and checks, which cost about a third of the gate's time on a 3 s clip
    (tests/test_audio.py checks the two agree).
    """
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
    framed = np.concatenate([np.zeros((1, SILERO_CONTEXT), np.float32), frames.reshape(1, -1)], axis=1)[0]
    out = np.empty(frames.shape[0], np.float32)
    step = frames.shape[1]
    for i in range(frames.shape[0]):
        window = framed[i * step : i * step + step + SILERO_CONTEXT][None]  # (1, 64 + 512)
        prob, state = session.run(None, {"input": window, "state": state, "sr": sr})
        out[i] = prob[0, 0]
    return out


class VoiceActivity:
    """Speech probability of successive frames of a stream, with silero-vad (offline, its model
    ships in the wheel): `prob(frame)` for frames of VAD_FRAME samples at 16 kHz, in order.

    silero-vad keeps state from frame to frame, so each stream gets its own model instance.
    """

    FRAME = 512  # samples per step at VAD_SAMPLE_RATE (32 ms), the size silero-vad takes

    def __init__(self):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad()

    def prob(self, frame: np.ndarray) -> float:
        import torch

        with torch.inference_mode():
            return float(self.model(torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)), VAD_SAMPLE_RATE))

    def reset(self) -> None:
        self.model.reset_states()


TRIMMERS = {"energy": trim_energy, "vad": trim_vad}


@dataclass(frozen=True)
class AudioSettings:
    """How a clip is prepared for a model (see the module docstring); saved with every pipeline and
    part of every cache key."""

    sample_rate: int = SAMPLE_RATE  # Hz every model of the pipeline works at
    offset: float = 0.0  # seconds skipped at the start (the papers skip 0.5 s of leading silence)
    duration: float | None = None  # seconds of the training crop (zero-padded); None hears the whole clip
    trim: str | None = None  # None, "energy" or "vad": cut leading and trailing silence when decoding

    def __post_init__(self):
        if self.trim is not None and self.trim not in TRIMMERS:
            raise ValueError(f"audio trim must be one of {sorted(TRIMMERS)} or none, not {self.trim!r}")
        if self.duration is not None and self.duration < MIN_WINDOW:
            raise ValueError(f"audio duration must be at least {MIN_WINDOW:g} s, not {self.duration:g}")
        if self.offset < 0:
            raise ValueError(f"audio offset must not be negative, not {self.offset:g}")

    @property
    def crop_samples(self) -> int | None:
        """Samples of the training crop; None when clips are heard whole."""
        return None if self.duration is None else int(round(self.duration * self.sample_rate))

    def decode(self, source, sr: int | None = None) -> np.ndarray:
        """A path (decoded with `load_audio`) or an array (mono or (N, channels) at `sr` Hz) -> float32
        mono at `sample_rate`, silence trimmed as `trim` says. Raises AudioError for an unusable signal."""
        if isinstance(source, (str, os.PathLike)):
            return load_audio(source, self.sample_rate, trim=self.trim)
        if sr is None:
            raise ValueError("an array needs its sample rate: pass sr=...")
        rate = check_rate(sr)
        x = np.asarray(source, dtype=np.float32)
        if x.ndim not in (1, 2):
            raise AudioError("<array>", f"expected samples (N,) or (N, channels), not an array of shape {x.shape}")
        x = to_mono(x)
        check_signal(x, "<array>")
        x = resample(x, rate, self.sample_rate)
        if self.trim is not None:
            x = TRIMMERS[self.trim](x, self.sample_rate)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _skip_offset(self, x: np.ndarray) -> np.ndarray:
        start = int(round(self.offset * self.sample_rate))
        return x[start:] if x.shape[0] - start >= MIN_WINDOW * self.sample_rate else x

    def crop(self, x: np.ndarray) -> np.ndarray:
        """A decoded clip -> the training crop (N,): offset skipped, `duration` s kept, zero-padded
        (with no duration: the clip, at least MIN_WINDOW and at most WHOLE_CLIP_MAX s)."""
        x = self._skip_offset(x)
        n = self.crop_samples
        if n is None:
            return fit(x, min(max(x.shape[0], int(MIN_WINDOW * self.sample_rate)), self._whole_max))
        return fit(x, n)

    @property
    def _whole_max(self) -> int:
        return int(WHOLE_CLIP_MAX * self.sample_rate)

    def windows(self, x: np.ndarray) -> np.ndarray:
        """A decoded clip -> what a model hears at evaluation and prediction (C, N): the training
        crop, or windows covering a long clip (module docstring). Probabilities are the windows' mean."""
        n = self.crop_samples
        if n is None:
            if self._skip_offset(x).shape[0] <= self._whole_max:
                return self.crop(x)[None, :]
            x, n = self._skip_offset(x), self._whole_max
            return np.stack([x[s : s + n] for s in window_starts(x.shape[0], n, n // 2, int(CLIP_TAIL * n))])
        if x.shape[0] <= round((self.offset + LONG_CLIP * self.duration) * self.sample_rate):
            return self.crop(x)[None, :]
        x = self._skip_offset(x)
        return np.stack([fit(x[s : s + n], n) for s in window_starts(x.shape[0], n, n // 2, int(CLIP_TAIL * n))])

    def prepare(self, source, sr: int | None = None) -> np.ndarray:
        """`windows(decode(source, sr))`: a file or an array -> (C, N), exactly what the model hears."""
        return self.windows(self.decode(source, sr))

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """The training crop of a file: `crop(decode(path))`."""
        return self.crop(self.decode(path))

    def key(self) -> str:
        """The settings as a short hash, for cache folders."""
        import hashlib

        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def decoding(self) -> "AudioSettings":
        """The settings `decode` depends on (rate, trimming), the crop left at its defaults."""
        return AudioSettings(self.sample_rate, trim=self.trim)

    def to_dict(self) -> dict:
        return asdict(self)


PAPER_AUDIO = AudioSettings(offset=0.5, duration=3.0)  # the papers' crop: skip 0.5 s, keep 3 s


def fit(x: np.ndarray, n: int) -> np.ndarray:
    """The first `n` samples of x, zero-padded at the end when shorter."""
    return x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))


def window_starts(n: int, win: int, hop: int, min_tail: int = 0) -> list[int]:
    """Start samples of `win`-sample windows hopped by `hop` over `n` samples.

    A signal no longer than one window gets one window at 0; when more than `min_tail` samples are
    left after the last full window, one more window ends exactly at `n`.
    """
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    if n - (starts[-1] + win) > min_tail:
        starts.append(n - win)
    return starts


def audio_info(path: str | os.PathLike) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) from the file header, without decoding."""
    try:
        with quiet_decoders():
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"{READ_ERROR} ({_libsndfile_message(e)})") from None
    return info.frames / info.samplerate, info.samplerate, info.channels
