"""Augmentation of training batches: waveforms (B, N) and feature maps (B, F, T). Pure tensor code.

Used on training batches only, after the split (DESIGN.md, evaluation rules). Every function takes an
explicit `torch.Generator` (None falls back to torch's global one), so a fixed seed reproduces a run;
random numbers are drawn on the generator's device and moved to the data's.

Waveform: `add_noise` (white Gaussian noise at an SNR in dB, seed 003_2f41: 15-30 dB), `time_shift`,
`gain`, `speed` (resampling). Features: `spec_augment` (frequency and time masks). Either: `mixup`.
`Augmenter` applies an `AugmentConfig`'s choice of them. Copies made once before a frozen encoder
(numpy): `degrade` (another room and channel) and `change_speed` (another voice: a pseudo-speaker).

Letters: B batch, N samples, F feature bins, T frames, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """n draws from U[lo, hi) as float32 on `like`'s device."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(device=like.device, dtype=torch.float32)


def _randint(lo: int, hi: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Integers from lo to hi inclusive."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(lo, hi + 1, shape, generator=generator, device=gen_device).to(device)


def _range(value: tuple[float, float] | float) -> tuple[float, float]:
    """(lo, hi) from a pair, or (v, v) from one number."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    lo, hi = value
    if lo > hi:
        raise ValueError(f"range ({lo}, {hi}) has lo > hi")
    return float(lo), float(hi)


def add_noise(x: torch.Tensor, snr_db: tuple[float, float] | float, generator: torch.Generator | None = None,
              lengths: torch.Tensor | None = None) -> torch.Tensor:
    """x plus white Gaussian noise at an SNR drawn per example uniformly from `snr_db` (lo, hi) in dB.

    x: (B, N). The signal power is the example's mean square, over its first `lengths[b]` samples
    when `lengths` is given (padding zeros are then left untouched). The drawn noise is rescaled to
    its exact target power, so the realised SNR, 10 log10(P_signal / P_noise), is the drawn one.
    A silent example stays silent.
    """
    lo, hi = _range(snr_db)
    B, N = x.shape
    if lengths is None:
        valid = torch.ones_like(x, dtype=torch.bool)
    else:
        valid = torch.arange(N, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, N)
    count = valid.sum(dim=1).clamp(min=1)
    p_signal = (x.double().pow(2) * valid).sum(dim=1) / count  # (B,)
    snr = _uniform(lo, hi, B, generator, x).double()
    device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(B, N, generator=generator, device=device, dtype=torch.float64).to(x.device) * valid
    p_noise = noise.pow(2).sum(dim=1) / count
    scale = torch.sqrt(p_signal / 10 ** (snr / 10) / p_noise.clamp(min=1e-30))  # (B,)
    return (x.double() + noise * scale[:, None]).to(x.dtype)


def time_shift(x: torch.Tensor, max_shift: float | int, generator: torch.Generator | None = None,
               circular: bool = False) -> torch.Tensor:
    """Shift each example along its last axis by a whole number of samples drawn uniformly from
    [-S, S]. S is `max_shift` samples when it is an int (or a float >= 1), and that fraction of the
    length N when it is a float below 1 (0.1 = up to 10 %). Samples shifted out are lost and the gap
    is filled with zeros, unless `circular`, which wraps them round to the other end.

    x: (B, N) or (B, C, N).
    """
    N = x.shape[-1]
    S = int(round(max_shift * N)) if isinstance(max_shift, float) and max_shift < 1 else int(max_shift)
    S = min(max(S, 0), N)
    if S == 0:
        return x.clone()
    shift = _randint(-S, S, (x.shape[0],), generator, x.device)  # (B,)
    src = torch.arange(N, device=x.device)[None, :] - shift[:, None]  # (B, N): y[n] = x[n - shift]
    view = x.reshape(x.shape[0], -1, N)  # (B, C, N)
    if circular:
        return view.gather(-1, (src % N)[:, None, :].expand_as(view)).reshape(x.shape)
    inside = (src >= 0) & (src < N)
    out = view.gather(-1, src.clamp(0, N - 1)[:, None, :].expand_as(view)) * inside[:, None, :]
    return out.reshape(x.shape)


def gain(x: torch.Tensor, db_range: tuple[float, float] | float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each example by a gain drawn uniformly from `db_range` (lo, hi) in dB; one number g
    means (-g, g). x: (B, ...)."""
    lo, hi = (-abs(db_range), abs(db_range)) if isinstance(db_range, (int, float)) else _range(db_range)
    g = _uniform(lo, hi, x.shape[0], generator, x)  # (B,)
    return x * (10 ** (g / 20)).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def speed(x: torch.Tensor, factors=(0.9, 1.0, 1.1), sr: int | None = None,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Speed perturbation: each example plays `f` times faster, f drawn uniformly from `factors`
    (pitch and tempo both change, as sox's `speed`: a tone at F Hz comes out at f * F Hz).

    Done by resampling the example to round(N / f) samples with linear interpolation (anti-aliased
    when shrinking, f > 1), then cropping the end (f < 1) or padding it with zeros (f > 1) back to N.
    `sr` is not needed (the change is relative) and is accepted only so callers may pass it.
    x: (B, N); padding zeros, if any, are resampled with the signal.
    """
    del sr
    factors = [float(f) for f in factors]
    if any(f <= 0 for f in factors):
        raise ValueError(f"speed factors must be positive, not {factors}")
    B, N = x.shape
    choice = _randint(0, len(factors) - 1, (B,), generator, torch.device("cpu"))
    out = x.clone()
    for k, f in enumerate(factors):
        rows = (choice == k).nonzero().flatten().to(x.device)
        if f == 1.0 or rows.numel() == 0:
            continue
        M = max(1, int(round(N / f)))
        y = F.interpolate(x[rows][:, None, None, :].float(), size=(1, M), mode="bilinear",
                          align_corners=False, antialias=M < N)[:, 0, 0, :].to(x.dtype)  # (b, M)
        out[rows] = y[:, :N] if M >= N else F.pad(y, (0, N - M))
    return out


def spec_augment(f: torch.Tensor, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: int = 20, generator: torch.Generator | None = None,
                 mask_value: float | None = None) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) without time warping, on feature maps f: (B, F, T).

    Each example gets `freq_masks` bands of w ~ U{0..freq_width} adjacent bins and `time_masks` spans
    of w ~ U{0..time_width} adjacent frames (widths capped at F and T), each starting uniformly where
    it fits; masks may overlap. Masked cells take `mask_value`, or the example's own mean by default
    (the value a normalised input would have at zero).
    """
    B, n_freq, n_time = f.shape

    def masks(n_masks: int, width: int, size: int) -> torch.Tensor:  # (B, size) bool
        width = min(width, size)
        if n_masks <= 0 or width <= 0:
            return torch.zeros(B, size, dtype=torch.bool, device=f.device)
        w = _randint(0, width, (B, n_masks), generator, f.device)
        start = (torch.rand(B, n_masks, generator=generator,
                            device=generator.device if generator is not None else "cpu").to(f.device)
                 * (size - w + 1)).long()  # uniform over 0 .. size - w
        pos = torch.arange(size, device=f.device)[None, None, :]
        return ((pos >= start[..., None]) & (pos < (start + w)[..., None])).any(dim=1)

    freq = masks(freq_masks, freq_width, n_freq)  # (B, F)
    frames = masks(time_masks, time_width, n_time)  # (B, T)
    hit = freq[:, :, None] | frames[:, None, :]  # (B, F, T)
    if mask_value is None:
        value = f.mean(dim=(1, 2), keepdim=True).expand_as(f)
    else:
        value = torch.full_like(f, float(mask_value))
    return torch.where(hit, value, f)


def mixup(x: torch.Tensor, y_onehot: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al. 2018): x' = l x + (1 - l) x[perm], y' likewise, with one l ~ Beta(alpha,
    alpha) per batch (as the paper) and a random pairing perm. x: (B, ...), y_onehot: (B, K) targets
    (one-hot or already soft); mixed targets still sum to 1. alpha <= 0 returns copies unchanged."""
    if alpha <= 0:
        return x.clone(), y_onehot.clone()
    B = x.shape[0]
    seed = _randint(0, 2**62, (1,), generator, torch.device("cpu")).item()
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))  # torch's Beta takes no generator
    perm = torch.randperm(B, generator=generator, device=generator.device if generator is not None else "cpu")
    perm = perm.to(x.device)
    y = y_onehot.to(x.dtype if x.is_floating_point() else torch.float32)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


@dataclass
class AugmentConfig:
    """Which augmentations a training run uses; every one is off by default."""

    noise_snr: tuple[float, float] | None = None  # white noise SNR range in dB (seed 003_2f41: (15, 30)); None = off
    noisy_copies: int = 0  # noisy copies per training clip made once (Augmenter.expand, seed 003 uses 2); 0 = noise on every batch instead
    shift: float = 0.0  # max time shift: a fraction of the clip (< 1) or samples (>= 1); 0 = off
    shift_circular: bool = False  # wrap shifted samples round instead of filling with zeros
    gain_db: tuple[float, float] | None = None  # gain range in dB, e.g. (-6, 6); None = off
    speed: tuple[float, ...] | None = None  # speed factors to pick from, e.g. (0.9, 1.0, 1.1); None = off
    specaugment: bool = False  # SpecAugment masks on the feature maps
    freq_masks: int = 2  # SpecAugment: frequency bands per example
    freq_width: int = 8  # SpecAugment: widest band, in bins
    time_masks: int = 2  # SpecAugment: time spans per example
    time_width: int = 20  # SpecAugment: widest span, in frames
    mixup_alpha: float = 0.0  # mixup Beta(alpha, alpha); 0 = off

    def __post_init__(self):
        for name in ("noise_snr", "gain_db", "speed"):  # TOML and JSON give lists
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        if self.noisy_copies < 0:
            raise ValueError(f"AugmentConfig.noisy_copies must be >= 0, not {self.noisy_copies}")
        if self.noisy_copies and self.noise_snr is None:
            raise ValueError("AugmentConfig.noisy_copies needs noise_snr (the SNR range of the copies)")


@dataclass
class Augmenter:
    """Applies an AugmentConfig to training batches.

    - `expand(x, y, generator)`: the clips plus `noisy_copies` noisy copies of each (done once, on
      the training part of a fold, after the split).
    - `augment_waves(x, generator)`: speed, then shift, then gain, then noise (when noise is not
      already made by copies), so the SNR is measured on the final signal.
    - `augment_features(f, generator)`: SpecAugment.
    - `mix(x, y_onehot, generator)`: mixup on whatever the model takes.
    """

    config: AugmentConfig = field(default_factory=AugmentConfig)

    def expand(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
               lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) followed by `noisy_copies` noisy versions of every clip: ((1 + copies) B, N)."""
        c = self.config
        if not c.noisy_copies:
            return x, y
        copies = [add_noise(x, c.noise_snr, generator, lengths) for _ in range(c.noisy_copies)]
        return torch.cat([x, *copies]), torch.cat([y] * (1 + c.noisy_copies))

    def changes_waves(self) -> bool:
        """Whether a training batch's waveforms change from epoch to epoch (speed, shift, gain, or noise
        not made once as copies): if not, a run's features can be computed once (`train.fit`)."""
        c = self.config
        return bool((c.noise_snr is not None and not c.noisy_copies) or c.shift or c.gain_db is not None
                    or (c.speed and any(f != 1.0 for f in c.speed)))

    def changes_waves_or_spectrograms(self) -> bool:
        """Whether any augmentation needs the waveform or the spectrogram (all but mixup)."""
        c = self.config
        return bool(c.noise_snr is not None or c.shift or c.gain_db is not None or c.specaugment
                    or (c.speed and any(f != 1.0 for f in c.speed)))

    def augment_waves(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        if c.speed and any(f != 1.0 for f in c.speed):
            x = speed(x, c.speed, generator=generator)
        if c.shift:
            x = time_shift(x, c.shift, generator, circular=c.shift_circular)
        if c.gain_db is not None:
            x = gain(x, c.gain_db, generator)
        if c.noise_snr is not None and not c.noisy_copies:
            x = add_noise(x, c.noise_snr, generator)
        return x

    def augment_features(self, f: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        if not c.specaugment:
            return f
        return spec_augment(f, c.freq_masks, c.freq_width, c.time_masks, c.time_width, generator)

    def mix(self, x: torch.Tensor, y_onehot: torch.Tensor,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return mixup(x, y_onehot, self.config.mixup_alpha, generator)


# --- rooms and channels a corpus never had (copies embedded once, before a frozen encoder) ---------

DEGRADE = "noise-band-reverb-v1"  # part of the cache key of degraded copies: change it when `degrade` changes


def degrade(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of a clip as another room and channel would give it: additive noise (white, pink or
    brown) at 5-30 dB SNR always; with probability 0.3 each, a band limit (telephone 300-3400 Hz, or a
    low-pass at 4-7 kHz) and reverberation (an exponentially decaying noise impulse response, RT60
    0.2-0.8 s, mixed at a random direct-to-reverberant ratio). Loudness is left to the encoder
    front-end's levelling. numpy and scipy only, deterministic given `rng`."""
    from scipy import signal

    y = np.asarray(x, dtype=np.float64)
    if rng.random() < 0.3:  # reverberation
        rt60 = rng.uniform(0.2, 0.8)
        n = int(rt60 * sr)
        rir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
        rir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path
        y = signal.fftconvolve(y, rir)[: len(y)]
    if rng.random() < 0.3:  # band limit
        if rng.random() < 0.5:
            sos = signal.butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos")
        else:
            sos = signal.butter(6, rng.uniform(4000, min(7000, sr / 2 - 100)), btype="lowpass", fs=sr, output="sos")
        y = signal.sosfilt(sos, y)
    colour = rng.integers(3)  # 0 white, 1 pink, 2 brown
    noise = rng.standard_normal(len(y))
    if colour:
        spectrum = np.fft.rfft(noise)
        f = np.maximum(np.fft.rfftfreq(len(y), 1 / sr), 20.0)
        noise = np.fft.irfft(spectrum / f ** (0.5 * colour), len(y))
    snr = rng.uniform(5.0, 30.0)
    p_signal, p_noise = np.mean(y ** 2), np.mean(noise ** 2)
    y = y + noise * np.sqrt(p_signal / (p_noise * 10 ** (snr / 10)))
    return y.astype(np.float32)


# --- voices a corpus never had: speed-perturbed copies of a speaker (pseudo-speakers) --------------

# The speed of voice copy k (1-based): Kaldi's 0.9 and 1.1 first, then further and nearer ones.
VOICE_FACTORS = (0.9, 1.1, 0.85, 1.15, 0.95, 1.05)
VOICE = "speed-soxr-hq-v1"  # part of the cache key of voice copies: change it when `change_speed` changes


def voice_factor(k: int) -> float:
    """The speed of voice copy k (1-based; ValueError past the last of VOICE_FACTORS)."""
    if not 1 <= k <= len(VOICE_FACTORS):
        raise ValueError(f"voice copy {k}: there are {len(VOICE_FACTORS)} voice copies (speeds {VOICE_FACTORS})")
    return VOICE_FACTORS[k - 1]


def change_speed(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """The clip played `factor` times as fast (Kaldi-style speed perturbation: one resampling, so pitch,
    formants and tempo move together and the length becomes len(x) / factor): the same sentences
    from a voice with a smaller (factor > 1) or larger vocal tract. soxr, high quality."""
    from .audio import resample

    return resample(np.asarray(x, dtype=np.float32), round(sr * factor), sr)
