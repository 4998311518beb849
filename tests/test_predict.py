"""Prediction with a trained pipeline: clips, many files, long recordings, a live stream, the CLI.

One small voxemo_net is trained once for the module (4 RAVDESS actors, 4 emotions, 2 epochs); the
clips it is pointed at come from actors it never heard.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
from typer.testing import CliRunner

from voxemo.audio import AudioError, load_audio, speech_segments, window_starts
from voxemo.cli import app
from voxemo.pipeline import PipelineError
from voxemo.predict import BUNDLED, Predictor, StreamListener, load_model

from .conftest import DATA

RAVDESS = DATA / "ravdess_speech"
EMOTIONS = ("neutral", "happy", "sad", "angry")
UNSEEN = [RAVDESS / "Actor_05" / f"03-01-{e}-05.flac" for e in ("01-01-01-01", "03-02-01-01", "04-02-02-01", "05-02-01-02")]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small models on a busy 2-core machine: one thread is many times faster than two that spin
    waiting for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from voxemo.experiment import Experiment, load_corpora, train_pipeline

    root = tmp_path_factory.mktemp("ravdess4")
    for a in range(1, 5):
        (root / f"Actor_{a:02d}").symlink_to(RAVDESS / f"Actor_{a:02d}")
    exp = Experiment(model="voxemo_net", emotions=EMOTIONS, val_speakers=2,
                     model_overrides={"channels": (8, 8, 16, 16), "gru": 8}, train={"epochs": 2})
    pipe, _, _ = train_pipeline(load_corpora([str(root)]), exp)
    path = tmp_path_factory.mktemp("model") / "small"
    pipe.save(path)
    return path


@pytest.fixture(scope="module")
def predictor(model_path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Four unseen clips at 16 kHz with 1 s of digital silence before, between and after:
    (path, samples, [(start, end) of each clip in seconds])."""
    sr, gap = 16000, np.zeros(16000, np.float32)
    parts, spans, t = [gap], [], 1.0
    for p in UNSEEN:
        x = load_audio(p, sr)
        parts += [x, gap]
        spans.append((t, t + len(x) / sr))
        t += len(x) / sr + 1.0
    x = np.concatenate(parts)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, x, sr)
    return path, x, spans


def test_path_and_array_at_another_rate_agree(predictor):
    by_path = predictor.predict(UNSEEN[3])
    x = load_audio(UNSEEN[3], 16000)
    by_array = predictor.predict(soxr.resample(x, 16000, 44100), sr=44100)
    stereo = predictor.predict(np.stack([x, x], axis=1), sr=16000)  # (N, channels) is averaged
    for r in (by_path, by_array, stereo):
        assert list(r["probabilities"]) == predictor.labels == list(EMOTIONS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["label"] == by_path["label"]
    for k in predictor.labels:
        assert by_array["probabilities"][k] == pytest.approx(by_path["probabilities"][k], abs=2e-3)
    with pytest.raises(ValueError, match="sample rate"):
        predictor.predict(x)


def test_clips_are_prepared_as_in_training(predictor):
    audio = predictor.pipeline.audio  # the bundled model: skip 0.5 s, keep 3 s
    x = load_audio(UNSEEN[0], 16000)  # 3.5 s: offset skipped, one 3 s window = the training crop
    windows = audio.prepare(UNSEEN[0])
    assert windows.shape == (1, 48000)
    np.testing.assert_array_equal(windows[0], audio.load(UNSEEN[0]))
    np.testing.assert_array_equal(audio.windows(np.concatenate([x, x[:16000]]))[0], windows[0])  # 4.5 s: still the crop
    short = x[: 12800]  # 0.8 s: less than MIN_WINDOW would remain after the offset, so it keeps its start
    w = audio.windows(short)
    assert w.shape == (1, 48000) and np.array_equal(w[0, :12800], short) and not w[0, 12800:].any()
    long = np.concatenate([x, x, x])  # 10.5 s, longer than offset + LONG_CLIP * 3 s: windows over all of it
    w = audio.windows(long)
    starts = window_starts(len(long) - 8000, 48000, 24000, 12000)
    assert w.shape == (len(starts), 48000) and len(starts) >= 5 and starts[-1] + 48000 == len(long) - 8000
    np.testing.assert_array_equal(w[-1], long[-48000:])
    p = predictor.predict(long, sr=16000)["probabilities"]
    want = predictor.pipeline.run(w).mean(0)  # the clip's probabilities: the mean of its windows'
    np.testing.assert_allclose([p[k] for k in predictor.labels], want / want.sum(), atol=1e-6)


def test_predict_many_reports_each_bad_file_and_goes_on(predictor, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("not audio at all")
    paths = [UNSEEN[0], tmp_path / "missing.wav", tmp_path / "empty.wav", tmp_path / "notes.wav", UNSEEN[1]]
    ticks = []
    out = predictor.predict_many(paths, progress=ticks.append)
    assert [r["path"] for r in out] == [str(p) for p in paths] and len(ticks) == 5
    assert "label" in out[0] and "label" in out[4]
    for r, problem in zip(out[1:4], ("file not found", "empty file", "not an audio file")):
        assert "label" not in r and r["error"].startswith(r["path"]) and problem in r["error"]


@pytest.fixture()
def folder(tmp_path):
    for p in UNSEEN[:2]:
        (tmp_path / p.name).symlink_to(p)
    return tmp_path


def test_cli_predict_folder_json_csv_table(model_path, folder, monkeypatch):
    import voxemo.cli

    monkeypatch.setattr(voxemo.cli.console, "width", 250)  # a wide terminal, so the table does not fold the paths
    r = run("predict", folder, "--model", model_path, "--format", "json")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["path"] for rec in records] == [str(folder / p.name) for p in UNSEEN[:2]]
    assert all(rec["label"] in EMOTIONS and set(rec["probabilities"]) == set(EMOTIONS) for rec in records)

    (folder / "broken.wav").write_text("not audio")
    r = run("predict", folder, "--model", model_path, "--format", "json")
    assert r.exit_code == 1
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 3 and sum("label" in rec for rec in records) == 2
    bad = next(rec for rec in records if "error" in rec)
    assert bad["path"] == str(folder / "broken.wav") and "broken.wav" in bad["error"]
    assert "broken.wav" in r.stderr and "Traceback" not in r.output

    r = run("predict", folder, "--model", model_path, "--format", "csv")
    assert r.exit_code == 1
    rows = r.stdout.splitlines()
    assert rows[0] == "path,label," + ",".join(EMOTIONS) + ",error" and len(rows) == 4
    assert any(row.startswith(str(folder / "broken.wav")) and "not an audio file" in row for row in rows)

    r = run("predict", folder / UNSEEN[0].name, "--model", model_path)
    assert r.exit_code == 0 and UNSEEN[0].name[:10] in r.stdout
    assert any(e in r.stdout for e in EMOTIONS)
    from voxemo.corpora import label_from_name

    truth = label_from_name(UNSEEN[0])
    assert truth in EMOTIONS and "labelled" in r.stdout and "of 1 files predicted as" in r.stdout
    assert label_from_name("my_recording.wav") is None and label_from_name("03a01Wa.wav") == "angry"


def test_cli_predict_clear_errors(model_path, tmp_path):
    r = run("predict", UNSEEN[0], "--model", tmp_path / "nope")
    assert r.exit_code == 2 and "pipeline file not found" in r.output and "Traceback" not in r.output
    r = run("predict", UNSEEN[0], "--model", model_path, "--format", "xml")
    assert r.exit_code == 2 and "--format" in r.output


def test_timeline_segments_lie_in_speech(predictor, recording, model_path, tmp_path):
    path, x, spans = recording
    r = run("predict", path, "--model", model_path, "--timeline", "--format", "json")
    assert r.exit_code == 0, r.output
    tl = json.loads(r.stdout)
    assert tl["duration"] == pytest.approx(len(x) / 16000, abs=1e-3)
    segs = tl["segments"]
    assert segs and all(s["label"] in EMOTIONS and 0 < s["confidence"] <= 1 for s in segs)
    for s in segs:  # inside one clip (silero pads speech by 30 ms), never in the silences between
        assert any(a - 0.1 <= s["start"] < s["end"] <= b + 0.1 for a, b in spans), s
    for a, b in spans:  # and every clip is heard
        assert any(a - 0.1 <= s["start"] and s["end"] <= b + 0.1 for s in segs)
    full = predictor.timeline(path, window=1.0, hop=0.25)
    assert all(w["end"] - w["start"] <= 1.0 + 1e-6 for w in full["windows"])
    ends = [s["end"] for s in full["segments"]]
    assert ends == sorted(ends) and all(s["start"] < s["end"] for s in full["segments"])

    png = tmp_path / "tl.png"
    r = run("predict", path, "--model", model_path, "--plot", png)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "segments" in r.stdout
    again = run("predict", path, "--model", model_path, "--plot", png)
    assert again.exit_code == 2 and "--force" in again.output
    assert run("predict", path, "--model", model_path, "--plot", png, "--force").exit_code == 0


def test_timeline_of_silence_is_empty(predictor, tmp_path):
    zeros = np.zeros(5 * 16000, np.float32)
    sf.write(tmp_path / "silence.wav", zeros, 16000)
    for tl in (predictor.timeline(zeros, sr=16000), predictor.timeline(tmp_path / "silence.wav")):
        assert tl["segments"] == [] and tl["windows"] == [] and tl["duration"] == pytest.approx(5.0)
    hum = (0.002 * np.sin(2 * np.pi * 50 * np.arange(5 * 16000) / 16000)).astype(np.float32)
    assert predictor.timeline(hum, sr=16000)["segments"] == []


@pytest.mark.parametrize("sr", [16000, 48000])
def test_stream_listener_reports_each_utterance(predictor, recording, sr):
    """The exact path the microphone callback takes: 0.1 s chunks into StreamListener.feed."""
    _, x, spans = recording
    truth = speech_segments(x, 16000)
    if sr != 16000:
        x = soxr.resample(x, 16000, sr)
    listener = StreamListener(predictor, sr)
    results, step = [], sr // 10
    for i in range(0, len(x), step):
        results += listener.feed(x[i : i + step])
    results += listener.flush()
    assert len(results) == len(spans) == len(truth)
    for r, (a, b), (va, vb) in zip(results, spans, truth):
        assert a - 0.15 <= r["start"] < r["end"] <= b + 0.15
        assert abs(r["start"] - va) < 0.25 and abs(r["end"] - vb) < 0.25
        assert r["label"] in EMOTIONS and sum(r["probabilities"].values()) == pytest.approx(1.0)


def test_stream_cut_off_mid_speech_reports_on_flush(predictor, recording):
    _, x, spans = recording
    cut = int((spans[0][0] + 1.5) * 16000)  # inside the first utterance
    listener = StreamListener(predictor, 16000)
    assert sum((listener.feed(x[i : min(i + 1600, cut)]) for i in range(0, cut, 1600)), []) == []
    last = listener.flush()
    assert len(last) == 1 and spans[0][0] - 0.15 <= last[0]["start"] < last[0]["end"] <= cut / 16000 + 1e-6


def test_bundled_model_and_lazy_import():
    if BUNDLED.with_name(BUNDLED.name + ".json").is_file():
        assert isinstance(load_model(), Predictor)
    else:
        with pytest.raises(PipelineError, match="no bundled model in this installation"):
            load_model()
    import voxemo
    import voxemo.predict

    assert voxemo.load_model is voxemo.predict.load_model and voxemo.Predictor is Predictor
    # `import voxemo` alone stays light: no torch
    subprocess.run([sys.executable, "-c", "import sys, voxemo; assert 'torch' not in sys.modules"], check=True)


def test_bad_arguments(predictor):
    with pytest.raises(ValueError, match="runtime"):
        Predictor(predictor.pipeline, runtime="tensorrt")
    assert predictor.predict(np.zeros(16000, np.float32), sr=16000)["no_speech"] is True  # silence: no speech, no error
    with pytest.raises(AudioError, match="NaN"):
        predictor.predict(np.full(16000, np.nan, np.float32), sr=16000)
    with pytest.raises(ValueError, match="at least"):
        predictor.timeline(UNSEEN[0], window=0.1)
