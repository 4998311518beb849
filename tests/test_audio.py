import numpy as np
import pytest
import soundfile as sf

from voxemo.audio import AudioError, crop_pad, load_audio, speech_segments, trim_energy, trim_vad

from .conftest import DATA

ORIG = DATA / "original_format" / "ravdess_speech" / "Actor_01"
STEREO = ORIG / "03-01-02-01-01-02-01.wav"


def test_original_wav_is_48k_and_comes_out_at_requested_rate():
    path = ORIG / "03-01-05-01-01-01-01.wav"
    info = sf.info(str(path))
    assert info.samplerate == 48000
    for sr in (16000, 22050, 8000):
        x = load_audio(path, sr)
        assert x.dtype == np.float32 and x.ndim == 1
        assert abs(x.shape[0] - info.frames * sr / 48000) <= 1


def test_resampled_original_matches_the_16k_flac_copy():
    """Our 48k -> 16k resampling agrees with the corpus's own soxr copy of the same recording."""
    ours = load_audio(ORIG / "03-01-05-01-01-01-01.wav", 16000)
    copy = load_audio(DATA / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.flac", 16000)
    n = min(ours.shape[0], copy.shape[0])
    assert abs(ours.shape[0] - copy.shape[0]) <= 1
    assert np.corrcoef(ours[:n], copy[:n])[0, 1] > 0.999


def test_stereo_file_is_downmixed_to_the_channel_mean():
    raw, sr = sf.read(str(STEREO), dtype="float32")
    assert raw.ndim == 2 and raw.shape[1] == 2
    x = load_audio(STEREO, sr)
    np.testing.assert_allclose(x, raw.mean(axis=1), atol=1e-6)


def test_offset_and_duration_crop_and_zero_pad():
    path = DATA / "emodb" / "wav" / "03a01Fa.flac"
    full = load_audio(path, 16000)
    x = load_audio(path, 16000, offset=0.5, duration=3.0)
    assert x.shape == (48000,)
    n = min(full.shape[0] - 8000, 48000)
    np.testing.assert_array_equal(x[:n], full[8000 : 8000 + n])
    assert full.shape[0] - 8000 < 48000 and not x[n:].any()  # this clip is short: padded with zeros
    assert crop_pad(np.ones(10, np.float32), 10, offset=0.5, duration=2.0).tolist() == [1] * 5 + [0] * 15


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not audio, just text"), "not an audio file"),
        (lambda p: sf.write(str(p), np.zeros(0, np.float32), 16000), "zero-length"),
        (lambda p: sf.write(str(p), np.zeros(16000, np.float32), 16000), "silent"),
        (lambda p: sf.write(str(p), np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(str(p), np.r_[np.ones(10), np.inf].astype(np.float32), 16000, subtype="FLOAT"), "NaN or infinite"),
    ],
    ids=["missing", "empty", "not-audio", "zero-length", "silent", "nan", "inf"],
)
def test_bad_input_raises_audio_error_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "bad clip.wav"
    make(path)
    with pytest.raises(AudioError) as e:
        load_audio(path, 16000)
    assert str(path) in str(e.value) and problem in str(e.value)
    assert e.value.path == str(path)


def test_too_short_and_folder_raise_audio_error(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(str(short), np.ones(160, np.float32) * 0.1, 16000)
    with pytest.raises(AudioError, match="too short"):
        load_audio(short, 16000, min_duration=0.5)
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path, 16000)


def _padded_clip():
    """A real clip with 1 s of digital silence on both sides."""
    x = load_audio(DATA / "emodb" / "wav" / "03a01Fa.flac", 16000)
    return x, np.concatenate([np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)])


def test_energy_trim_removes_added_silence():
    x, padded = _padded_clip()
    t = trim_energy(padded, 16000)
    assert t.shape[0] < x.shape[0]  # the added second on each side is gone, and the clip's own pauses
    assert abs(t.shape[0] - trim_energy(x, 16000).shape[0]) <= 160  # within one hop of trimming the clip itself
    assert load_audio(DATA / "emodb" / "wav" / "03a01Fa.flac", 16000, trim="energy").shape == trim_energy(x, 16000).shape


def test_vad_finds_the_speech_and_trims_the_silence():
    x, padded = _padded_clip()
    segments = speech_segments(padded, 16000)
    assert segments and 0.9 <= segments[0][0] <= 1.5
    assert padded.shape[0] / 16000 - 1.6 <= segments[-1][1] <= padded.shape[0] / 16000 - 0.8
    t = trim_vad(padded, 16000)
    assert t.shape[0] < padded.shape[0] - 16000
    assert speech_segments(np.random.default_rng(0).normal(0, 1e-3, 32000).astype(np.float32), 16000) == []


def test_gate_reads_silero_onnx_as_its_own_wrapper_does():
    """speech_probabilities calls the ONNX session directly: the same numbers as silero-vad's wrapper."""
    import torch
    from silero_vad import load_silero_vad

    from voxemo.audio import speech_probabilities

    x, padded = _padded_clip()
    model = load_silero_vad(onnx=True)
    frames = torch.from_numpy(np.ascontiguousarray(padded[: padded.shape[0] // 512 * 512], np.float32)).reshape(-1, 512)
    expected = np.array([float(model(frame, 16000)) for frame in frames], np.float32)
    got = speech_probabilities(padded, 16000)
    assert got.shape == expected.shape and expected.max() > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-6)
