"""Augmentation: shapes kept, the asked SNR / gain / speed / mask widths realised, seeds reproduce."""

import math

import numpy as np
import pytest
import torch

from voxemo.audio import load_audio
from voxemo.augment import (
    AugmentConfig, Augmenter, add_noise, gain, mixup, spec_augment, speed, time_shift,
)

from .conftest import DATA

SR = 16000


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def speech():
    """Two real clips, 3 s each, as a (2, N) batch."""
    clips = [DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac",
             DATA / "emodb" / "wav" / "08a02Ab.flac"]
    return torch.from_numpy(np.stack([load_audio(p, SR, duration=3.0) for p in clips]))


def snr_db(clean, noisy):
    noise = noisy.double() - clean.double()
    return 10 * torch.log10(clean.double().pow(2).mean(-1) / noise.pow(2).mean(-1))


def test_noise_realises_the_drawn_snr(speech):
    x = torch.cat([speech, 0.01 * speech])  # loud and quiet copies: SNR is relative to each example
    y = add_noise(x, (15.0, 30.0), gen())
    assert y.shape == x.shape and y.dtype == x.dtype
    snr = snr_db(x, y)
    assert torch.all((snr > 15 - 0.5) & (snr < 30 + 0.5)), snr
    fixed = snr_db(x, add_noise(x, 20.0, gen()))
    assert torch.allclose(fixed, torch.full_like(fixed, 20.0), atol=0.5)
    # the drawn SNRs differ between examples and cover the range
    many = snr_db(speech.repeat(32, 1), add_noise(speech.repeat(32, 1), (15, 30), gen(1)))
    assert many.min() < 17 and many.max() > 28


def test_noise_ignores_padding():
    x = torch.zeros(2, 32000)
    x[0, :16000] = torch.sin(torch.arange(16000) * 2 * math.pi * 440 / SR)
    x[1] = torch.sin(torch.arange(32000) * 2 * math.pi * 440 / SR)
    lengths = torch.tensor([16000, 32000])
    y = add_noise(x, 10.0, gen(), lengths=lengths)
    assert torch.all(y[0, 16000:] == 0)  # padding stays silent
    assert snr_db(x[0, :16000], y[0, :16000]) == pytest.approx(10.0, abs=0.5)
    assert torch.all(add_noise(torch.zeros(1, 100), 20.0, gen()) == 0)  # silence stays silent


def test_seeded_generator_reproduces(speech):
    aug = Augmenter(AugmentConfig(noise_snr=(15, 30), shift=0.1, gain_db=(-6, 6), speed=(0.9, 1.0, 1.1)))
    a, b = aug.augment_waves(speech, gen(5)), aug.augment_waves(speech, gen(5))
    assert a.shape == speech.shape and torch.equal(a, b)
    assert not torch.equal(a, aug.augment_waves(speech, gen(6)))
    f = torch.randn(4, 64, 300, generator=gen(10))
    assert torch.equal(spec_augment(f, generator=gen(2)), spec_augment(f, generator=gen(2)))
    y = torch.eye(4)
    assert all(torch.equal(p, q) for p, q in zip(mixup(f, y, 0.4, gen(3)), mixup(f, y, 0.4, gen(3))))


def test_time_shift_zero_fill_and_circular():
    x = torch.arange(1, 101, dtype=torch.float32).repeat(64, 1)  # (64, 100)
    y = time_shift(x, 10, gen())
    shifts = []
    for row in y:  # y[n] = x[n - s]: the first kept sample, at index i, holds value i - s + 1
        nz = row.nonzero().flatten()
        s = int(nz[0]) - int(row[nz[0]]) + 1
        shifts.append(s)
        assert torch.equal(row[nz], torch.arange(1, 101, dtype=torch.float32)[nz - s])
        assert (row == 0).sum() == abs(s)  # zero-filled gap exactly as wide as the shift
    assert max(map(abs, shifts)) <= 10 and len(set(shifts)) > 5
    c = time_shift(x, 0.1, gen(), circular=True)  # a fraction: 10 % of 100 samples
    for row in c:
        assert sorted(row.tolist()) == list(range(1, 101))  # nothing lost
        k = int(torch.nonzero(row == 1).item())
        assert min(k, 100 - k) <= 10
    assert c.shape == x.shape and time_shift(x.reshape(64, 1, 100), 5, gen()).shape == (64, 1, 100)


def test_gain_in_range(speech):
    x = speech.repeat(50, 1)
    ratio_db = 20 * torch.log10(gain(x, (-6.0, 3.0), gen()).abs().amax(-1) / x.abs().amax(-1))
    assert torch.all((ratio_db >= -6 - 1e-4) & (ratio_db <= 3 + 1e-4))
    assert ratio_db.min() < -4 and ratio_db.max() > 1
    sym = 20 * torch.log10(gain(x, 2.0, gen()).abs().amax(-1) / x.abs().amax(-1))
    assert sym.abs().max() <= 2 + 1e-4 and sym.min() < 0 < sym.max()


def dominant_hz(x):
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return np.argmax(spectrum) * SR / len(x)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_moves_a_sine_by_the_factor(factor):
    n = SR * 2
    x = torch.sin(2 * math.pi * 1000 * torch.arange(n) / SR)[None]  # 1 kHz, 2 s
    y = speed(x, (factor,), sr=SR, generator=gen())[0]
    assert y.shape == (n,)
    kept = int(n / factor) if factor > 1 else n  # a faster clip ends early and is padded with zeros
    assert dominant_hz(y[: min(kept, n) - 10]) == pytest.approx(1000 * factor, rel=0.005)
    if factor > 1:
        assert torch.all(y[kept + 2:] == 0)


def test_speed_picks_among_factors():
    x = torch.sin(2 * math.pi * 500 * torch.arange(SR) / SR).repeat(40, 1)
    y = speed(x, (0.9, 1.0, 1.1), generator=gen())
    found = {round(dominant_hz(row[: int(SR / 1.1) - 10]) / 500, 2) for row in y}
    assert found == {0.9, 1.0, 1.1}


def test_spec_augment_masks_cover_the_asked_widths():
    f = torch.randn(256, 40, 100, generator=gen(9)) + 5.0
    out = spec_augment(f, freq_masks=1, freq_width=8, time_masks=1, time_width=20, generator=gen(),
                       mask_value=-100.0)  # a value no input cell has, so masked cells are exact
    assert out.shape == f.shape
    masked = out == -100.0  # (B, F, T)
    freq_rows = masked.all(dim=2)  # bins masked over all frames
    time_cols = masked.all(dim=1)  # frames masked over all bins
    widths_f, widths_t = freq_rows.sum(1), time_cols.sum(1)
    assert widths_f.max() == 8 and widths_t.max() == 20  # the full width is reached ...
    assert widths_f.min() == 0 and len(set(widths_f.tolist())) == 9  # ... and every width from 0 to 8
    for b in range(256):
        for line in (freq_rows[b].nonzero().flatten(), time_cols[b].nonzero().flatten()):
            if len(line):
                assert line[-1] - line[0] + 1 == len(line)  # one contiguous band / span
        # every masked cell is explained by the two masks, every other cell is untouched
        assert torch.equal(masked[b], freq_rows[b][:, None] | time_cols[b][None, :])
        assert torch.equal(out[b][~masked[b]], f[b][~masked[b]])
    # by default masked cells take the example's own mean
    default = spec_augment(f[:8], generator=gen(4))
    for b in range(8):
        changed = default[b] != f[b]
        assert changed.any() and torch.allclose(default[b][changed], f[b].mean().expand(int(changed.sum())))
    two = spec_augment(f, freq_masks=2, freq_width=8, time_masks=2, time_width=20, generator=gen(), mask_value=-100.0)
    assert (two == -100).all(dim=2).sum(1).max() <= 16 and (two == -100).all(dim=1).sum(1).max() <= 40


def test_mixup_targets_sum_to_one():
    x = torch.randn(16, 64, 50, generator=gen(11))
    y = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float()
    xm, ym = mixup(x, y, 0.4, gen())
    assert xm.shape == x.shape and ym.shape == y.shape and not torch.equal(xm, x)
    assert torch.allclose(ym.sum(1), torch.ones(16)) and torch.all((ym >= 0) & (ym <= 1))
    # inputs are mixed exactly as their targets: with x = y the two outputs agree
    eye = torch.eye(16)
    xe, ye = mixup(eye, eye, 0.4, gen(7))
    assert torch.allclose(xe, ye) and torch.allclose(ye.sum(1), torch.ones(16))
    lam = ye.max(1).values  # one lambda for the batch: every row holds lambda and 1 - lambda
    assert torch.allclose(lam, lam[0].expand(16)) or torch.any(lam == 1)
    xs, ys = mixup(x, y, 0.0, gen())
    assert torch.equal(xs, x) and torch.equal(ys, y)


def test_augmenter_noisy_copies_and_feature_switch(speech):
    aug = Augmenter(AugmentConfig(noise_snr=(15, 30), noisy_copies=2))
    x, y = aug.expand(speech, torch.tensor([3, 5]), gen())
    assert x.shape == (6, speech.shape[1]) and y.tolist() == [3, 5, 3, 5, 3, 5]
    assert torch.equal(x[:2], speech) and not torch.equal(x[2:4], x[4:6])
    snr = snr_db(speech.repeat(2, 1), x[2:])
    assert torch.all((snr > 14.5) & (snr < 30.5))
    assert torch.equal(aug.augment_waves(speech, gen()), speech)  # noise came as copies, not per batch
    f = torch.randn(2, 40, 100, generator=gen(12))
    assert torch.equal(aug.augment_features(f, gen()), f)  # SpecAugment off
    on = Augmenter(AugmentConfig(specaugment=True)).augment_features(f, gen())
    assert on.shape == f.shape and not torch.equal(on, f)
    with pytest.raises(ValueError, match="noise_snr"):
        AugmentConfig(noisy_copies=2)
