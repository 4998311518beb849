"""The HTTP service through FastAPI's TestClient (no server): predictions on real RAVDESS clips, the
timeline of a longer recording, the information endpoints and the page, the limits and the errors a
user sees for bad uploads, and concurrent requests."""

import io
import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
with warnings.catch_warnings():  # Starlette >= 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from voxemo.audio import load_audio  # noqa: E402
from voxemo.serve import create_app  # noqa: E402

from .conftest import DATA  # noqa: E402
from .small_pipeline import CLASSES, save_small_pipeline  # noqa: E402

ANGRY_FLAC = DATA / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.flac"
ANGRY_WAV = DATA / "original_format" / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.wav"  # 48 kHz original
SAD_FLAC = DATA / "ravdess_speech" / "Actor_02" / "03-01-04-01-02-01-02.flac"
LONG_CLIPS = [DATA / "ravdess_speech" / "Actor_03" / f"03-01-{e:02d}-02-01-01-03.flac" for e in (5, 4, 3, 6)]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from voxemo.predict import load_model

    return load_model(save_small_pipeline(tmp_path_factory.mktemp("model") / "small"))


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_app(predictor))


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> bytes:
    """Four RAVDESS clips of one actor (angry, sad, happy, fearful) one after the other: about 15 s."""
    x = np.concatenate([load_audio(p, 16000) for p in LONG_CLIPS])
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wav_bytes(x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def post(client, name, content, **params):
    return client.post("/predict", files={"file": (name, content, "application/octet-stream")}, params=params)


def check_prediction(body, duration):
    assert body["label"] in CLASSES
    assert list(body["probabilities"]) == CLASSES  # every class, in the model's order
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["duration"] == pytest.approx(duration, abs=0.01)


# --- predictions ---------------------------------------------------------------------------------

def test_predict_flac_and_wav_of_the_same_recording(client, predictor):
    flac = post(client, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes())
    assert flac.status_code == 200, flac.text
    check_prediction(flac.json(), sf.info(str(ANGRY_FLAC)).duration)
    assert "timeline" not in flac.json()  # only when asked for
    # the service answers exactly what the library answers for the decoded file
    expected = predictor.predict(load_audio(ANGRY_FLAC, 16000), sr=16000)
    assert flac.json()["label"] == expected["label"]
    for k, p in expected["probabilities"].items():
        assert flac.json()["probabilities"][k] == pytest.approx(float(p), abs=1e-6)

    wav = post(client, ANGRY_WAV.name, ANGRY_WAV.read_bytes())  # 48 kHz original, resampled by the service
    assert wav.status_code == 200, wav.text
    check_prediction(wav.json(), sf.info(str(ANGRY_WAV)).duration)
    a, b = (np.array(list(r.json()["probabilities"].values())) for r in (flac, wav))
    assert np.abs(a - b).max() < 0.02  # two encodings of one recording: (nearly) the same answer


def test_timeline_of_a_longer_recording(client, long_wav):
    r = post(client, "long.wav", long_wav, timeline="true", window=2.0, hop=0.5)
    assert r.status_code == 200, r.text
    body = r.json()
    duration = sum(sf.info(str(p)).duration for p in LONG_CLIPS)
    check_prediction(body, duration)
    tl = body["timeline"]
    assert tl["duration"] == pytest.approx(duration, abs=0.01)
    segs = tl["segments"]
    assert segs and tl["windows"] and tl["speech"]
    for w in tl["windows"]:  # windows over speech only
        assert any(a - 1e-3 <= w["start"] < w["end"] <= b + 1e-3 for a, b in tl["speech"])
    for s in segs:
        assert 0 <= s["start"] < s["end"] <= duration + 0.01
        assert s["label"] in CLASSES and 0 <= s["confidence"] <= 1
        assert s["confidence"] == pytest.approx(s["probabilities"][s["label"]], abs=1e-4)
    starts = [s["start"] for s in segs]
    assert starts == sorted(starts) and all(a["end"] <= b["start"] + 1e-6 for a, b in zip(segs, segs[1:]))
    assert segs[-1]["end"] > duration / 2  # the timeline covers the whole recording, not its first window


def test_timeline_without_voice_activity_covers_everything(client, long_wav):
    r = post(client, "long.wav", long_wav, timeline="true", vad="false", window=3.0, hop=1.5)
    assert r.status_code == 200, r.text
    tl = r.json()["timeline"]
    assert tl["speech"] == [[0.0, pytest.approx(tl["duration"], abs=1e-3)]]
    assert tl["segments"][0]["start"] == 0 and tl["segments"][-1]["end"] == pytest.approx(tl["duration"], abs=1e-3)


def test_timeline_parameters_are_checked(client, long_wav):
    assert post(client, "long.wav", long_wav, timeline="true", window=0).status_code == 422
    assert post(client, "long.wav", long_wav, timeline="true", hop=-1).status_code == 422


def test_onnx_runtime_serves_the_same_answers(predictor, client, tmp_path):
    pytest.importorskip("onnxruntime")
    from voxemo.predict import Predictor

    onnx = TestClient(create_app(Predictor(predictor.pipeline, runtime="onnx")))
    assert onnx.get("/model").json()["runtime"] == "onnx" and onnx.get("/health").json()["runtime"] == "onnx"
    a, b = (post(c, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes()).json() for c in (client, onnx))
    assert a["label"] == b["label"]
    assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)


# --- information endpoints and the page ------------------------------------------------------------

def test_health_and_model(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["runtime"] == "torch"
    m = client.get("/model").json()
    assert m["labels"] == CLASSES and m["runtime"] == "torch" and m["model"] == "voxemo_net"
    assert m["corpora"] == ["ravdess"] and m["protocol"] == "speaker-holdout"
    assert m["validation_metrics"]["ua"] == pytest.approx(0.125)
    assert m["validation_speakers"] == ["ravdess:01", "ravdess:02"]
    assert "cv_metrics" not in m  # only what the pipeline file holds
    assert m["audio"]["sample_rate"] == 16000
    assert m["limits"] == {"max_upload_mb": 20, "max_duration_s": 600, "min_hop_s": 0.1, "max_windows": 2400,
                           "budget_s": 60.0}


def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text and "http" not in docs.text.replace(client.base_url.host, "")  # works offline
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(spec["paths"])
    post_spec = spec["paths"]["/predict"]["post"]
    assert {p["name"] for p in post_spec["parameters"]} >= {"timeline", "window", "hop"}
    assert "multipart/form-data" in post_spec["requestBody"]["content"]
    assert "/" not in spec["paths"]  # the page is not part of the API


def test_web_page(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert 'id="upload-form"' in page and 'type="file"' in page and 'id="record"' in page
    assert "MediaRecorder" in page and "OfflineAudioContext" in page  # records and converts to WAV itself
    assert "http://" not in page and "https://" not in page  # nothing from a CDN: works offline


# --- limits ----------------------------------------------------------------------------------------

def test_upload_above_the_size_limit_is_refused(predictor):
    small = TestClient(create_app(predictor, max_upload_mb=0.01))  # 10 kB
    r = post(small, ANGRY_WAV.name, ANGRY_WAV.read_bytes())  # 380 kB: refused from its Content-Length
    assert r.status_code == 413 and "too large" in r.json()["detail"] and "10 kB" in r.json()["detail"]
    r = post(small, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes())  # 22 kB: refused while being copied
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    # a chunked upload has no Content-Length: refused by counting the bytes as they arrive
    body, ctype = multipart_body("big.wav", ANGRY_WAV.read_bytes())
    r = small.post("/predict", content=(body[i : i + 8192] for i in range(0, len(body), 8192)),
                   headers={"content-type": ctype})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    tiny = wav_bytes(load_audio(ANGRY_FLAC, 16000)[16000:18400])  # 0.15 s, under the limit
    assert post(small, "tiny.wav", tiny).status_code == 200  # the service still answers


def multipart_body(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "voxemo-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_recording_above_the_duration_limit_is_refused(predictor, long_wav):
    short = TestClient(create_app(predictor, max_duration_s=10))
    r = post(short, "long.wav", long_wav)
    assert r.status_code == 413
    assert "too long" in r.json()["detail"] and "10 s" in r.json()["detail"] and "long.wav" in r.json()["detail"]
    assert post(short, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes()).status_code == 200


# --- bad uploads: a clear message, never a 500 -------------------------------------------------------

@pytest.mark.parametrize("name,content,status,words", [
    ("notes.txt", b"this is not a recording\n" * 20, 415, "not an audio file"),
    ("fake.wav", b"RIFF but not really a wave file" * 10, 415, "not an audio file"),
    ("empty.wav", b"", 422, "empty"),
    ("nan.wav", wav_bytes(np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT"), 422, "NaN"),
])
def test_bad_uploads_get_a_clear_error(client, name, content, status, words):
    r = post(client, name, content)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and detail.startswith(name + ":")  # names the upload, not a temporary file
    assert "/tmp" not in detail and "voxemo-upload" not in detail


def test_silence_is_answered_no_speech(client):
    r = post(client, "silence.wav", wav_bytes(np.zeros(16000, dtype=np.float32)))
    assert r.status_code == 200 and r.json() == {"label": None, "no_speech": True, "speech": 0.0, "duration": 1.0}


def test_missing_file_field(client):
    assert client.post("/predict").status_code == 422
    r = client.post("/predict", files={"audio": ("a.flac", ANGRY_FLAC.read_bytes())})  # wrong field name
    assert r.status_code == 422 and "file" in json.dumps(r.json()["detail"])


def test_no_temporary_files_are_left(client, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    post(client, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes())
    post(client, "silence.wav", wav_bytes(np.zeros(16000, dtype=np.float32)))
    post(client, "notes.txt", b"not audio")
    assert not list(tmp_path.glob("voxemo-upload-*"))


# --- concurrency -----------------------------------------------------------------------------------

def test_concurrent_requests(client):
    """20 requests at once, two different clips: every one succeeds, each clip gets one answer."""
    clips = {"angry": ANGRY_FLAC.read_bytes(), "sad": SAD_FLAC.read_bytes()}
    jobs = ["angry", "sad"] * 10

    def send(which):
        r = post(client, f"{which}.flac", clips[which])
        return which, r.status_code, r.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, jobs))
    assert [s for _, s, _ in results] == [200] * 20
    answers = {w: {c for ww, _, c in results if ww == w} for w in clips}
    assert len(answers["angry"]) == 1 and len(answers["sad"]) == 1  # byte-identical for the same clip
    assert answers["angry"] != answers["sad"]


# --- the command -----------------------------------------------------------------------------------

def test_serve_command_builds_the_app_and_binds_to_loopback(tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from voxemo.cli import app as cli

    model = save_small_pipeline(tmp_path / "small")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, **kw: seen.update(web=web, **kw))
    r = CliRunner().invoke(cli, ["serve", "--model", str(model), "--max-upload-mb", "0.01", "--port", "8765"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8765  # loopback unless told otherwise
    assert "http://127.0.0.1:8765/" in r.output
    c = TestClient(seen["web"])
    assert c.get("/model").json()["limits"]["max_upload_mb"] == 0.01
    assert post(c, ANGRY_FLAC.name, ANGRY_FLAC.read_bytes()).status_code == 413

    r = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["serve", "--model", str(model), "--runtime", "tensorflow"])
    assert r.exit_code == 2 and "--runtime" in r.output
