"""One door for audio: what `voxemo evaluate` measures is what `voxemo predict` and `POST /predict` give.

Tiny pipelines are trained through the CLI, one on the papers' fixed crop (skip 0.5 s, keep 3 s)
of RAVDESS clips, one on the energy-trimmed utterance of EmoDB clips (offset 0, 2 s windows, so the
longer clips are heard as several windows), and a fusion (`voxemo fuse`) of two that cut RAVDESS
clips differently. On the same files, the per-clip probabilities that `voxemo evaluate
--predictions` scores equal those of `voxemo predict` and of the HTTP service.
"""

import json
import warnings

import pytest
from typer.testing import CliRunner

from voxemo.audio import AudioSettings
from voxemo.cli import app

from .conftest import DATA

RAVDESS = DATA / "ravdess_speech"
EMODB = DATA / "emodb" / "wav"
ATOL = 1e-5
TINY = """
model = "voxemo_net"
[model_overrides]
channels = [8, 16, 16, 16]
gru = 16
[train]
epochs = 1
batch_size = 8
"""


def ravdess_corpus(root):
    """Eight clips of each of four actors, linked in RAVDESS's layout."""
    for actor in ("01", "02", "03", "04"):
        folder = root / f"Actor_{actor}"
        folder.mkdir(parents=True)
        for p in sorted((RAVDESS / f"Actor_{actor}").glob("*.flac"))[::7][:8]:
            (folder / p.name).symlink_to(p)
    return root


def emodb_corpus(root):
    """Seven clips of each of four EmoDB speakers, the longest of each speaker among them."""
    folder = root / "wav"
    folder.mkdir(parents=True)
    for speaker in ("03", "08", "09", "10"):
        clips = sorted(EMODB.glob(f"{speaker}*.flac"), key=lambda p: p.stat().st_size)
        for p in clips[::9][:6] + clips[-1:]:
            (folder / p.name).symlink_to(p)
    return root


CASES = {  # corpus, then the [audio] table of each pipeline (two: they are fused, `voxemo fuse`)
    "fixed-crop": (ravdess_corpus, [""]),
    "trimmed-utterance": (emodb_corpus, ["[audio]\noffset = 0.0\nduration = 2.0\ntrim = \"energy\"\n"]),
    "fusion": (ravdess_corpus, ["", "[audio]\noffset = 0.0\nduration = 2.0\n"]),
}


def train_tiny(corpus, audio: str, out):
    config = out.with_suffix(".toml")
    config.write_text(TINY.replace("[model_overrides]", audio + "[model_overrides]"))
    r = CliRunner().invoke(app, ["train", str(corpus), "--config", str(config), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, tmp_path_factory):
    make_corpus, audios = CASES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    corpus = make_corpus(tmp / "corpus")
    members = [train_tiny(corpus, audio, tmp / f"model{i}") for i, audio in enumerate(audios)]
    out = members[0]
    if len(members) > 1:  # members that cut clips differently (3 s after 0.5 s; 2 s windows from 0), weighed 1:2
        out = tmp / "fused"
        r = CliRunner().invoke(app, ["fuse", *map(str, members), "--out", str(out), "--weights", "1,2"])
        assert r.exit_code == 0, r.output
    evaluated = tmp / "evaluated.jsonl"
    r = CliRunner().invoke(app, ["evaluate", str(out), str(corpus), "--predictions", str(evaluated)])
    assert r.exit_code == 0, r.output
    clips = {c["path"]: c for c in map(json.loads, evaluated.read_text().splitlines())}
    return out, clips


def assert_same(got: dict, want: dict, where: str):
    assert got["label"] == want["label"], where
    assert list(got["probabilities"]) == list(want["probabilities"]), where
    for k, p in want["probabilities"].items():
        assert got["probabilities"][k] == pytest.approx(p, abs=ATOL), f"{where}: {k}"


def test_the_pipeline_keeps_its_audio_settings(trained):
    out, clips = trained
    paths = sorted(out.glob("member*.json")) if out.is_dir() else [out.with_suffix(".json")]
    descs = [json.loads(p.read_text()) for p in paths]
    audios = [AudioSettings(**d["audio"]) for d in descs]
    assert all("sample_rate" not in d["frontend"] for d in descs)  # the rate is stored once, with the audio
    assert len(clips) >= 20
    if audios[0].trim == "energy":  # some clips are long enough to be heard as several windows
        assert max(len(audios[0].prepare(p)) for p in clips) > 1
    if len(audios) > 1:  # a fusion keeps each member's own cut
        assert [(a.offset, a.duration) for a in audios] == [(0.5, 3.0), (0.0, 2.0)]


def test_evaluate_and_predict_give_the_same_probabilities(trained):
    out, clips = trained
    r = CliRunner().invoke(app, ["predict", *clips, "--model", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    predicted = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert sorted(p["path"] for p in predicted) == sorted(clips)
    for p in predicted:
        assert_same(p, clips[p["path"]], p["path"])


def test_evaluate_and_the_http_service_give_the_same_probabilities(trained):
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from voxemo.predict import load_model
    from voxemo.serve import create_app

    out, clips = trained
    with TestClient(create_app(load_model(out))) as client:
        for path, want in clips.items():
            with open(path, "rb") as f:
                r = client.post("/predict", files={"file": (path.rsplit("/", 1)[-1], f, "audio/flac")})
            assert r.status_code == 200, r.text
            assert_same(r.json(), want, path)


def test_long_windows_go_through_in_smaller_batches_with_the_same_answers():
    """A long recording's 30 s windows are batched by samples, not only by count: a request's memory and
    the gaps between its time-budget checks stay bounded; every window still gets its own row, in order."""
    import numpy as np

    from voxemo.pipeline import MAX_BATCH_SAMPLES, clip_probabilities

    sr = 16000
    rng = np.random.default_rng(0)
    long = rng.standard_normal((20, 30 * sr)).astype(np.float32)  # one 600 s recording as 30 s windows
    short = [rng.standard_normal((1, 3 * sr)).astype(np.float32) for _ in range(40)]  # forty 3 s clips
    batches = []

    def run(waves):
        batches.append(waves.shape)
        return np.stack([waves.mean(axis=1), waves.std(axis=1)], axis=1)  # (b, 2): each window's own row

    got = clip_probabilities(run, [long, *short], 2, batch_size=32)
    assert max(b[0] * b[1] for b in batches) <= MAX_BATCH_SAMPLES
    assert [b[0] for b in batches if b[1] == 30 * sr] == [3] * 6 + [2]
    assert [b[0] for b in batches if b[1] == 3 * sr] == [32, 8]
    want = np.stack([np.stack([c.mean(axis=1), c.std(axis=1)], axis=1).mean(axis=0) for c in [long, *short]])
    np.testing.assert_allclose(got, want, rtol=1e-6)
