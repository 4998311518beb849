"""Front-end shapes, configuration round trip, and agreement with librosa on real clips."""

import librosa
import numpy as np
import pytest
import torch

from voxemo.audio import load_audio
from voxemo.features import Chunker, Frontend, FrontendConfig, dct_matrix, preemphasize, smile_functionals

from .conftest import DATA

CLIPS = [
    DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac",
    DATA / "ravdess_speech" / "Actor_12" / "03-01-04-01-02-02-12.flac",
    DATA / "ravdess_song" / "Actor_05" / "03-02-03-02-01-01-05.flac",
    DATA / "emodb" / "wav" / "08a02Ab.flac",
]
# Tolerances, in dB of the log-mel / in MFCC units (MFCC values here reach several hundred):
# float32 torch vs float64-accumulating numpy differ by rounding only.
LOGMEL_ATOL_DB = 0.01
MFCC_ATOL = 0.01


@pytest.fixture(scope="module")
def waves():
    return [load_audio(p, 16000, offset=0.5, duration=3.0) for p in CLIPS]


def batch(waves):
    return torch.from_numpy(np.stack(waves))


def test_logmel_agrees_with_librosa(waves):
    cfg = FrontendConfig(kind="logmel", n_fft=512, hop_length=160, n_mels=64, fmin=50, fmax=7600)
    ours = Frontend(cfg)(batch(waves)).numpy()
    for x, f in zip(waves, ours):
        ref = librosa.power_to_db(librosa.feature.melspectrogram(
            y=x, sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=50, fmax=7600))
        assert f.shape == ref.shape
        np.testing.assert_allclose(f, ref, atol=LOGMEL_ATOL_DB)


def test_mfcc_agrees_with_librosa(waves):
    cfg = FrontendConfig(kind="mfcc", n_mfcc=13, n_mels=40, preemphasis=0.97)
    ours = Frontend(cfg)(batch(waves)).numpy()
    for x, f in zip(waves, ours):
        y = librosa.effects.preemphasis(x, coef=0.97, zi=np.zeros(1))  # zero initial state, as ours
        ref = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13, n_fft=512, hop_length=160, n_mels=40, window="hamming")
        assert f.shape == ref.shape == (13, 301)
        np.testing.assert_allclose(f, ref, atol=MFCC_ATOL)


def test_mfcc_steps_are_the_papers():
    """Pre-emphasis is 1 - b z^-1 and the DCT is orthonormal DCT-II (scipy's)."""
    from scipy.fft import dct

    x = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    assert preemphasize(x, 0.5).tolist() == [[1.0, 1.5, 3.0, 6.0]]
    v = np.random.default_rng(0).normal(size=40).astype(np.float32)
    np.testing.assert_allclose(dct_matrix(40, 13) @ v, dct(v, type=2, norm="ortho")[:13], rtol=1e-5, atol=1e-5)


def test_shapes_of_every_kind(waves):
    x = batch(waves[:2])  # (2, 48000)
    assert Frontend(FrontendConfig(kind="logmel"))(x).shape == (2, 128, 301)
    assert Frontend(FrontendConfig(kind="mfcc", n_mfcc=12))(x).shape == (2, 12, 301)
    stft = Frontend(FrontendConfig.for_kind("stft"))
    assert stft(x).shape == (2, 128, 376)  # 256-sample frames, 50 % overlap: 128 bins
    lin = Frontend(FrontendConfig.for_kind("stft", log=False))(x)
    ref = np.abs(librosa.stft(waves[0], n_fft=256, hop_length=128, window="hann"))[:128]
    np.testing.assert_allclose(lin[0].numpy(), ref, rtol=1e-3, atol=1e-4)
    mean = Frontend(FrontendConfig(kind="mean_mfcc"))(x)
    assert mean.shape == (2, 301)
    np.testing.assert_allclose(mean.numpy(), Frontend(FrontendConfig(kind="mfcc"))(x).mean(1).numpy(), atol=1e-5)
    per_coefficient = Frontend(FrontendConfig(kind="mfcc_time_mean", n_mfcc=13))(x)  # one vector a clip
    assert per_coefficient.shape == (2, 13)
    np.testing.assert_allclose(per_coefficient.numpy(), Frontend(FrontendConfig(kind="mfcc", n_mfcc=13))(x).mean(2).numpy(),
                               atol=1e-4)
    with pytest.raises(ValueError, match="1-D series"):
        Frontend(FrontendConfig(kind="mfcc_time_mean", chunks=7))
    assert Frontend(FrontendConfig(kind="logmel"))(x[0]).shape == (1, 128, 301)  # (N,) is a batch of one


def test_chunker_equal_chunks_and_sliding_windows(waves):
    x = batch(waves[:2])
    f = Frontend(FrontendConfig(kind="logmel"))(x)  # (2, 128, 301)
    seven = Frontend(FrontendConfig(kind="logmel", chunks=7))(x)
    assert seven.shape == (2, 7, 128, 43)
    torch.testing.assert_close(seven[:, 3], f[..., 3 * 43 : 4 * 43])  # chunk 3 is frames 129..171
    win = Frontend(FrontendConfig.for_kind("stft", window_frames=128, window_hop=8))(x)
    assert win.shape == (2, 1 + (376 - 128) // 8, 128, 128)
    short = Chunker(window_frames=500, window_hop=100)(f)  # shorter than one window: padded to one
    assert short.shape == (2, 1, 128, 500)
    with pytest.raises(ValueError):
        Chunker(chunks=400)(f)


def test_config_round_trips_through_json():
    cfg = FrontendConfig(kind="mfcc", n_mfcc=12, fmax=8000.0, chunks=7, preemphasis=0.95)
    back = FrontendConfig.from_json(cfg.to_json())
    assert back == cfg
    torch.testing.assert_close(Frontend(back)(torch.ones(1, 16000) * 0.1), Frontend(cfg)(torch.ones(1, 16000) * 0.1))
    with pytest.raises(ValueError, match="kind"):
        FrontendConfig(kind="wavelet")
    with pytest.raises(ValueError, match="unknown key"):
        FrontendConfig.from_dict({"kind": "mfcc", "n_mfccs": 3})


def test_frontend_batches_equal_single_clips(waves):
    fe = Frontend(FrontendConfig(kind="mfcc"))
    together = fe(batch(waves))
    for i, x in enumerate(waves):
        torch.testing.assert_close(together[i], fe(torch.from_numpy(x)[None])[0], atol=1e-3, rtol=1e-4)


def test_egemaps_functionals(waves):
    feats, names = smile_functionals(waves[:2], 16000, "egemaps")
    assert feats.shape == (2, 88) and len(names) == 88 and np.isfinite(feats).all()
    assert "F0semitoneFrom27.5Hz_sma3nz_amean" in names
    assert not np.allclose(feats[0], feats[1])


def test_clip_vectors_standardised_per_coefficient_and_series_as_one(waves):
    """mfcc_time_mean's 40 coefficients differ in scale (c0 is hundreds of dB): each is standardised
    on its own; mean_mfcc's steps are one series over time and share one mean and std."""
    from voxemo.experiment import Experiment, build

    x = batch(waves[:4])
    vec = build(Experiment(model="cnn1d_mean_mfcc", frontend={"kind": "mfcc_time_mean"}), ["female", "male"])
    f = vec.frontend(x)  # (4, 40)
    z = vec.normalizer.fit(f)(f)
    torch.testing.assert_close(z.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(40), atol=1e-4, rtol=0)
    assert vec.model(z).shape == (4, 2)  # the 1-D CNN reads the vector as a 40-step series
    series = build(Experiment(model="cnn1d_mean_mfcc"), ["female", "male"])
    s = series.frontend(x)  # (4, 301)
    zs = series.normalizer.fit(s)(s)
    assert len(series.normalizer.mean) == 1 and abs(float(zs.mean())) < 1e-4 and abs(float(zs.std()) - 1) < 1e-3
