"""The front-end: batched waveforms (B, N) in, feature maps out. Pure tensor code, no I/O.

Kinds (FrontendConfig.kind):
- "logmel":    power STFT -> mel filterbank -> dB                          (B, n_mels, T)
- "mfcc":      pre-emphasis 1 - b z^-1 -> Hamming-windowed power STFT -> mel filterbank -> dB
               -> DCT-II (orthonormal), first n_mfcc coefficients           (B, n_mfcc, T)
               (seed 000_9bc1's steps)
- "stft":      linear STFT magnitude, frame 256 / hop 128 by default (seed 004_d4c4), in dB unless
               `log` is off; the Nyquist bin is dropped so 256-point frames give 128 bins
                                                                            (B, n_fft // 2, T)
- "mean_mfcc": the per-frame mean over the MFCC coefficients, a 1-D series (seed 002_0b61)
                                                                            (B, T)
- "mfcc_time_mean": the mean over the frames of each MFCC coefficient, one vector a clip, read by a
               1-D network as an n_mfcc-step series: the other reading of seed 002_0b61's "mean
               MFCC", the clip vector of the common RAVDESS recipe (librosa's MFCCs averaged over
               time); frames of zero padding count in the mean, so compare clips of one length
                                                                            (B, n_mfcc)
Then, optionally, a chunker: `chunks=N` cuts the time axis into N equal chunks (seed 001_289f uses 7;
frames past N * (T // N) are dropped), or `window_frames=W, window_hop=H` cuts sliding windows;
either gives (B, C, F, W).

Agreement with librosa (tests/test_features.py states the tolerances): the mel filterbank is
librosa's (Slaney scale and norm), the STFT is centred with zero padding as librosa's (>= 0.10), and "dB" is
librosa.power_to_db with ref 1, amin 1e-10 and top_db 80 (per clip). One deliberate difference:
pre-emphasis starts from a zero initial state (y[0] = x[0]); librosa's default extrapolates one.

Letters: B batch, N samples, F feature bins, T frames, C chunks, W frames per chunk.
"""

from __future__ import annotations

import threading

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import config
from .audio import SAMPLE_RATE

N_FFT = 512  # 32 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz: 100 frames per second
N_MELS = 128
N_MFCC = 40
PREEMPHASIS = 0.97
AMIN = 1e-10  # floor before the log, as librosa.power_to_db
TOP_DB = 80.0  # dynamic range kept below each clip's peak, as librosa.power_to_db
KINDS = ("logmel", "mfcc", "stft", "mean_mfcc", "mfcc_time_mean", "whisper", "whisper_frames")
SERIES_KINDS = ("mean_mfcc", "mfcc_time_mean")  # a 1-D output a clip, (B, T) or (B, n_mfcc): nothing to chunk
ENCODER_KINDS = ("whisper", "whisper_frames")  # kinds that run a frozen pretrained encoder (EncoderStats, EncoderFrames)


@dataclass
class FrontendConfig:
    """Everything that decides how a waveform becomes features; saved with every pipeline. The
    waveform's sample rate is not here: it is the audio settings' (`AudioSettings.sample_rate`), given
    to `Frontend` when it is built, so a pipeline stores it once."""

    kind: str = "logmel"  # one of KINDS; "whisper": a pretrained encoder's pooled layer statistics (EncoderStats);
    # "whisper_frames": its layers' frames, pairs averaged (EncoderFrames)
    n_fft: int = N_FFT  # FFT size in samples
    win_length: int | None = None  # window length in samples; None = n_fft
    hop_length: int = HOP_LENGTH  # samples between frames
    window: str = "hann"  # "hann" or "hamming" (mfcc always uses Hamming, as seed 000_9bc1)
    center: bool = True  # zero-pad n_fft // 2 on both sides, as librosa (>= 0.10)
    n_mels: int = N_MELS  # mel bands (logmel, mfcc)
    fmin: float = 0.0  # lowest mel band edge, Hz
    fmax: float | None = None  # highest mel band edge, Hz; None = sample_rate / 2
    n_mfcc: int = N_MFCC  # cepstral coefficients kept (mfcc, mean_mfcc, mfcc_time_mean)
    preemphasis: float = PREEMPHASIS  # b in 1 - b z^-1 (the MFCC kinds); 0 turns it off
    log: bool = True  # dB scale (logmel, stft); off gives power (logmel) or magnitude (stft)
    top_db: float | None = TOP_DB  # clip each example at its peak minus top_db; None keeps all
    chunks: int | None = None  # cut the time axis into this many equal chunks
    window_frames: int | None = None  # or: sliding windows of this many frames ...
    window_hop: int | None = None  # ... this many frames apart (default window_frames)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"FrontendConfig.kind must be one of {KINDS}, not {self.kind!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"FrontendConfig.window must be one of {sorted(WINDOWS)}, not {self.window!r}")
        if self.chunks is not None and self.window_frames is not None:
            raise ValueError("FrontendConfig: give chunks or window_frames, not both")

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> "FrontendConfig":
        """The defaults of one kind, then `overrides`: "stft" gets seed 004_d4c4's 256-sample frames
        with 50 % overlap; the other kinds the module defaults."""
        return cls(**{"kind": kind, **KIND_DEFAULTS.get(kind, {}), **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendConfig":
        """Unknown keys are a ConfigError naming them."""
        return config.from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "FrontendConfig":
        return cls.from_dict(json.loads(s))


KIND_DEFAULTS = {"stft": {"n_fft": 256, "hop_length": 128}}
WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}


@lru_cache(maxsize=16)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """librosa's mel filterbank (Slaney), (n_mels, n_fft // 2 + 1), computed once per setting."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


@lru_cache(maxsize=16)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix (n_mfcc, n_mels): mfcc = D @ log_mel, as scipy's dct(norm="ortho")."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    d = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    d[0] *= 1 / np.sqrt(2.0)  # k = 0 row
    return d.astype(np.float32)


def power_to_db(s: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """10 log10(max(s, AMIN)), then clipped at each example's peak minus top_db. s: (B, F, T)."""
    db = 10.0 * torch.log10(torch.clamp(s, min=AMIN))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)  # (B, 1, 1)
        db = torch.maximum(db, peak - top_db)
    return db


def preemphasize(x: torch.Tensor, coef: float) -> torch.Tensor:
    """y[n] = x[n] - coef * x[n-1], with x[-1] = 0. x: (B, N)."""
    if coef == 0:
        return x
    return torch.cat([x[:, :1], x[:, 1:] - coef * x[:, :-1]], dim=1)


def centre_pad(x: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """(B, N) -> (B, N + 2n): `n` samples on both sides, zeros or a reflection of the signal."""
    if mode == "constant":
        return nn.functional.pad(x, (n, n))
    return nn.functional.pad(x.unsqueeze(1), (n, n), mode=mode).squeeze(1)


class Spectrogram(nn.Module):
    """(B, N) -> power or magnitude STFT, frames first: (B, T, n_fft // 2 + 1).

    Framing by `unfold` and a real FFT per frame: the same numbers as torch.stft / librosa.stft
    (centred, zero-padded, window centred in n_fft), about twice as fast here on CPU, and frames-first
    so the mel matrix multiplies without a copy.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None, window: str, center: bool, power: float,
                 pad_mode: str = "constant"):
        super().__init__()
        self.n_fft, self.hop_length, self.center, self.power = n_fft, hop_length, center, power
        self.pad_mode = pad_mode  # centring pad: "constant" (zeros, as librosa) or "reflect" (as Whisper)
        win_length = win_length or n_fft
        w = WINDOWS[window](win_length, periodic=True)
        left = (n_fft - win_length) // 2
        w = nn.functional.pad(w, (left, n_fft - win_length - left))  # centred in n_fft, as torch.stft
        self.register_buffer("window", w, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.center:
            x = centre_pad(x, self.n_fft // 2, self.pad_mode)
        frames = x.unfold(-1, self.n_fft, self.hop_length) * self.window  # (B, T, n_fft)
        spec = torch.fft.rfft(frames)  # (B, T, n_fft // 2 + 1)
        power = spec.real.square() + spec.imag.square()
        return power if self.power == 2 else power.sqrt()


class LogMel(nn.Module):
    """(B, N) -> log-mel spectrogram (B, n_mels, T), in dB (or mel power when cfg.log is off)."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int = SAMPLE_RATE, window: str | None = None):
        super().__init__()
        self.cfg = cfg
        self.spectrogram = Spectrogram(cfg.n_fft, cfg.hop_length, cfg.win_length, window or cfg.window, cfg.center, 2.0)
        fb = mel_filters(sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        self.register_buffer("mel_t", torch.from_numpy(fb).T.contiguous(), persistent=False)  # (n_fft // 2 + 1, n_mels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.spectrogram(x), self.mel_t).transpose(1, 2)  # (B, n_mels, T)
        return power_to_db(mel, self.cfg.top_db) if self.cfg.log else mel


class MFCC(nn.Module):
    """(B, N) -> MFCC (B, n_mfcc, T): pre-emphasis, Hamming window, power, mel, dB, DCT-II."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.cfg = cfg
        self.logmel = LogMel(dataclasses.replace(cfg, log=True), sample_rate, window="hamming")
        self.register_buffer("dct", torch.from_numpy(dct_matrix(cfg.n_mels, cfg.n_mfcc)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = preemphasize(x, self.cfg.preemphasis)
        return torch.matmul(self.dct, self.logmel(x))  # (B, n_mfcc, T)


class MeanMFCC(nn.Module):
    """(B, N) -> (B, T): the mean over the MFCC coefficients of each frame."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.mfcc = MFCC(cfg, sample_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mfcc(x).mean(dim=1)


class MFCCTimeMean(MeanMFCC):
    """(B, N) -> (B, n_mfcc): the mean over the frames of each MFCC coefficient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mfcc(x).mean(dim=2)


class LinearSTFT(nn.Module):
    """(B, N) -> STFT magnitude without the Nyquist bin (B, n_fft // 2, T), in dB when cfg.log."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.cfg = cfg
        self.spectrogram = Spectrogram(cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.window, cfg.center, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = self.spectrogram(x)[..., : self.cfg.n_fft // 2].transpose(1, 2)  # (B, n_fft // 2, T)
        return power_to_db(power, self.cfg.top_db) if self.cfg.log else power.sqrt()


class Chunker(nn.Module):
    """(B, F, T) -> (B, C, F, W): `chunks` equal chunks, or sliding windows of W frames hop H.

    Sliding windows pad the end with the clip's minimum so a clip shorter than W gives one window.
    """

    def __init__(self, chunks: int | None = None, window_frames: int | None = None, window_hop: int | None = None):
        super().__init__()
        if (chunks is None) == (window_frames is None):
            raise ValueError("Chunker needs exactly one of chunks or window_frames")
        self.chunks, self.window_frames = chunks, window_frames
        self.window_hop = window_hop or window_frames

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        t = f.shape[-1]
        if self.chunks is not None:
            w = t // self.chunks
            if w == 0:
                raise ValueError(f"cannot cut {t} frames into {self.chunks} chunks")
            f = f[..., : w * self.chunks]
            return f.reshape(*f.shape[:-1], self.chunks, w).movedim(-2, 1)  # (B, C, F, W)
        w, h = self.window_frames, self.window_hop
        if t < w:
            f = nn.functional.pad(f, (0, w - t), value=float(f.min()))
        return f.unfold(-1, w, h).movedim(-2, 1)  # (B, C, F, W)


FEATURES = {"logmel": LogMel, "mfcc": MFCC, "stft": LinearSTFT, "mean_mfcc": MeanMFCC, "mfcc_time_mean": MFCCTimeMean}


class EncoderStats(nn.Module):
    """(B, N) -> (B, L + 1, 2, D): the mean and std over frames of every hidden state of a frozen,
    pretrained encoder (`voxemo.encoders`, e.g. Whisper base), the input of the encoder heads.

    The encoder is held outside this module's parameters and buffers: its weights come from their
    own package (checked by sha256 when loaded), never from a pipeline's safetensors, and it is
    never trained. Its forward pass is still traced into an ONNX export.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        object.__setattr__(self, "encoder", encoder.eval().requires_grad_(False))  # frozen; not a submodule: not in the state dict
        self.upto: int | None = None  # run only this many blocks (the rows above are zeros): set to what the head reads

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.encoder.cfg.layers + 1, 2, self.encoder.cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.pooled_stats(x, upto=self.upto)  # (B, L + 1, 2, D)


class EncoderFrames(EncoderStats):
    """(B, N) -> (B, L + 1, S', D): every hidden state's frames of a frozen, pretrained encoder, each
    pair of frames averaged (S' = ceil(S / 2), 25 a second for Whisper), the input of the frame heads
    (`WhisperEncoder.frame_states`, the same code as the cache's). The batch holds clips of one length
    (`pipeline.clip_probabilities` groups windows by length), so no frame is padding here; in the
    cache's padded batches frames past a clip's own are zeros in every row. Held as EncoderStats holds
    its encoder."""

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.encoder.cfg.layers + 1, 0, self.encoder.cfg.width)  # S' = 0: any number of frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.frame_states(x, upto=self.upto)[0]  # (B, L + 1, S', D)

    @staticmethod
    def trim(x: torch.Tensor) -> torch.Tensor:
        """A batch of cached frames (B, L + 1, S', D), zero past each clip's own, cut to its longest clip
        (a clip's own frames are never zero in row 0): the frame heads, which ignore padding, give the
        same answer for less work."""
        own = x[:, 0].abs().amax(-1) > 0  # (B, S')
        return x[:, :, : int(own.any(0).nonzero().max()) + 1] if own.any() else x


class Frontend(nn.Module):
    """Waveforms (B, N) at `sample_rate` Hz -> features, as FrontendConfig says: (B, F, T), a series
    (B, T) or (B, n_mfcc), chunked (B, C, F, W), or a pretrained encoder's statistics (B, L + 1, 2, D)
    (kind "whisper") or frames (B, L + 1, S', D) (kind "whisper_frames"), which need the `encoder`
    module)."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int = SAMPLE_RATE, encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.sample_rate = sample_rate
        if cfg.kind in ENCODER_KINDS:
            if encoder is None:
                raise ValueError(f"a {cfg.kind} front-end needs its encoder (voxemo.encoders.load_whisper_encoder())")
            self.features = (EncoderStats if cfg.kind == "whisper" else EncoderFrames)(encoder)
        else:
            self.features = FEATURES[cfg.kind](cfg, sample_rate)
        chunked = cfg.chunks is not None or cfg.window_frames is not None
        if chunked and cfg.kind in SERIES_KINDS:
            raise ValueError(f"{cfg.kind} is a 1-D series; chunking applies to feature maps")
        self.chunker = Chunker(cfg.chunks, cfg.window_frames, cfg.window_hop) if chunked else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        f = self.features(x)
        return self.chunker(f) if self.chunker is not None else f

    def n_frames(self, n_samples: int) -> int:
        """Frames this front-end makes from a waveform of n_samples (before chunking)."""
        if self.cfg.center:
            return 1 + n_samples // self.cfg.hop_length
        return 1 + (n_samples - (self.cfg.win_length or self.cfg.n_fft)) // self.cfg.hop_length


SMILE_SETS = ("egemaps", "compare")
_smiles = threading.local()  # one openSMILE extractor per set and thread: building one costs ~0.2 s


def _smile(feature_set: str):
    import opensmile

    sets = {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}
    if feature_set not in sets:
        raise ValueError(f"feature_set must be one of {SMILE_SETS}, not {feature_set!r}")
    cache = _smiles.__dict__.setdefault("by_set", {})
    if feature_set not in cache:
        cache[feature_set] = opensmile.Smile(feature_set=sets[feature_set], feature_level=opensmile.FeatureLevel.Functionals)
    return cache[feature_set]


def smile_functionals(waves: list[np.ndarray], sr: int, feature_set: str = "egemaps") -> tuple[np.ndarray, list[str]]:
    """openSMILE functionals for the classic baseline: (N, D) float32 and the D feature names.

    feature_set: "egemaps" (eGeMAPS v02, 88 features) or "compare" (ComParE 2016, 6373 features).
    """
    smile = _smile(feature_set)
    rows = [smile.process_signal(w, sr).to_numpy()[0] for w in waves]
    return np.stack(rows).astype(np.float32), list(smile.feature_names)
