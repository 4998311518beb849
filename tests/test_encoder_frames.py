"""The frame path of the encoder heads: Whisper's frames of every layer, pairs averaged (front-end kind
"whisper_frames", `WhisperEncoder.frame_states`), their per-clip cache (`embeddings.FrameCache`), and
`encoder_attentive` (attentive statistics pooling, optionally the encoder's top blocks fine-tuned).

The padding tests use tiny random heads and the small random encoder of test_whisper.py; the pipeline
tests run Whisper base on six EmoDB clips (skipped when its wheels are not installed).
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voxemo.audio import AudioSettings, load_audio
from voxemo.corpora import scan
from voxemo.encoders import load_whisper_encoder
from voxemo.encoders.whisper import level
from voxemo.features import EncoderFrames
from voxemo.models import create_model

from .conftest import DATA
from .test_whisper import encoder, tiny_file  # noqa: F401  (fixtures)

EMOTIONS = ["anger", "boredom", "neutral"]
DATA_CLIP = DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac"  # 4.1 s


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_head(**kw):
    torch.manual_seed(0)
    return create_model("encoder_attentive", n_classes=3, input_shape=(3, 0, 32), heads=2, ffn=16, hidden=8,
                        attention=8, **kw).eval()


def padded_frames(lengths: list[int], extra: int = 0) -> torch.Tensor:
    """(B, 3, max + extra, 32) random frames, clip i's own the first lengths[i], zeros after."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(len(lengths), 3, max(lengths) + extra, 32)
    for i, n in enumerate(lengths):
        x[i, :, :n] = torch.randn(3, n, 32, generator=g) * 3 + 1
    return x


@pytest.mark.parametrize("finetune", [0, 1])
def test_a_clip_gets_the_same_answer_alone_and_padded_in_a_batch(finetune):
    head = tiny_head(finetune_blocks=finetune)
    lengths = [5, 12, 1, 9]
    x = padded_frames(lengths, extra=7)
    with torch.no_grad():
        together = head(x)
        alone = torch.cat([head(x[i : i + 1, :, :n]) for i, n in enumerate(lengths)])
        longer = head(torch.nn.functional.pad(x, (0, 0, 0, 30)))
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(longer, together, rtol=0, atol=1e-5)
    assert EncoderFrames.trim(x).shape[2] == 12  # training cuts a batch to its longest clip: the same answer
    assert torch.isfinite(together).all()  # a clip of one frame has no spread: the std floor


def test_frames_are_the_same_in_a_padded_batch_as_alone(tiny_file, data):
    """Pairs of frames averaged, a clip's odd last frame kept alone, zeros past each clip's own."""
    model = load_whisper_encoder(tiny_file)
    waves = [torch.from_numpy(load_audio(data / "emodb" / "wav" / f)) for f in ("03a01Wa.flac", "03a01Fa.flac")]
    waves.append(waves[0][:16000 + 160 * 6])  # 101 encoder frames: odd
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.inference_mode():
        together, n = model.frame_states(batch, lengths)
        for i, w in enumerate(waves):
            alone, m = model.frame_states(w[None])
            S = model.output_frames(len(w))
            assert alone.shape == (1, 3, (S + 1) // 2, 64) and int(m) == int(n[i]) == (S + 1) // 2
            torch.testing.assert_close(together[i, :, : n[i]], alone[0], rtol=0, atol=1e-4)
            assert not together[i, :, n[i]:].any() and alone[0, 0].abs().amax(-1).min() > 0
        h = model.hidden_states(level(waves[2][None]))
    assert torch.allclose(alone[0, :, -1], torch.stack(h, 1)[0, :, -1], atol=1e-6)  # the odd last frame alone


def test_frame_cache_returns_what_it_computed(tiny_file, data, tmp_path, monkeypatch):
    from voxemo import embeddings
    from voxemo.embeddings import EmbeddingCache, FrameCache, embed_frames

    utts = scan(data / "emodb")[:4]
    model = load_whisper_encoder(tiny_file)
    X, skipped = embed_frames(utts, encoder=model, cache_root=tmp_path, max_batch=2)
    longest = max(int(model.output_frames(len(AudioSettings().load(u.path)))) for u in utts)
    assert X.dtype == np.float16 and X.shape == (4, 3, (longest + 1) // 2, 64) and skipped == []
    with torch.inference_mode():  # what the pipeline's front-end makes of the clip alone
        alone = model.frame_states(torch.from_numpy(AudioSettings().load(utts[1].path))[None])[0][0].numpy()
    np.testing.assert_allclose(X[1, :, : alone.shape[1]].astype(np.float32), alone, atol=2e-3 * np.abs(alone).max())
    assert not X[1, :, alone.shape[1]:].any()

    def no_compute(*args):
        raise AssertionError("the second call must read the cache")

    monkeypatch.setattr(embeddings, "frame_states", no_compute)
    Y, _ = embed_frames(utts, encoder=model, cache_root=tmp_path)
    assert np.array_equal(X, Y)
    assert FrameCache(model, root=tmp_path).dir != EmbeddingCache(model, root=tmp_path).dir


def test_finetuned_blocks_start_as_the_encoders_and_the_encoder_stops_below_them(encoder):
    from voxemo.experiment import Experiment, build
    from voxemo.train import TrainConfig, parameter_groups

    pipe = build(Experiment(model="encoder_attentive", model_overrides={"finetune_blocks": 2}), EMOTIONS)
    head = pipe.model
    for mine, theirs in zip(head.blocks, encoder.blocks[4:]):
        for (k, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(a, b), k
    assert torch.equal(head.ln_post.weight, encoder.ln_post.weight)
    assert pipe.frontend.features.upto == 4 and head.reads == [0, 1, 2, 3, 4]
    groups = parameter_groups(head, TrainConfig(lr=1e-3))
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3 * head.config.finetune_lr_scale])
    assert sum(len(g["params"]) for g in groups) == len(list(head.parameters()))
    plain = build(Experiment(model="encoder_attentive"), EMOTIONS)
    assert plain.frontend.features.upto == 6 and not plain.model.blocks


def test_trained_pipeline_round_trips_and_hears_what_it_trained_on(encoder, data, tmp_path, monkeypatch):
    """Trained on cached frames, saved (safetensors + JSON), loaded: the same probabilities on the audio,
    and those the head gives the cached frames (float16) within 1e-2."""
    from voxemo.experiment import Experiment, build, load_clips, model_inputs
    from voxemo.pipeline import load_pipeline
    from voxemo.train import fit

    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path / "cache"))
    exp = Experiment(model="encoder_attentive", model_overrides={"finetune_blocks": 1, "hidden": 16, "attention": 16},
                     train={"epochs": 1, "batch_size": 2})
    utts = [u for u in scan(data / "emodb") if u.emotion in EMOTIONS][:4]
    clips = load_clips(utts, exp.audio)
    X = model_inputs(exp, utts, clips)
    y = torch.tensor([EMOTIONS.index(u.emotion) for u in utts])
    pipe = build(exp, EMOTIONS)
    fit(pipe, (X, y), None, exp.train_config(), precomputed=True)
    assert not torch.equal(pipe.model.blocks[0].fc1.weight, encoder.blocks[5].fc1.weight)  # fine-tuned

    pipe.save(tmp_path / "p")
    keys = load_file(str(tmp_path / "p.safetensors")).keys()
    assert "model.blocks.0.fc1.weight" in keys and not any("encoder" in k for k in keys)
    again = load_pipeline(tmp_path / "p")
    probs = pipe.hear(clips)
    np.testing.assert_allclose(again.hear(clips), probs, atol=1e-6)
    with torch.inference_mode():
        on_cache = pipe.eval().logits(X.float()).softmax(-1).numpy()
    np.testing.assert_allclose(on_cache, probs, atol=1e-2)


def test_onnx_export_pairs_an_odd_last_frame_as_torch_does(encoder, tmp_path):
    """Any length: 32,200 samples give 101 encoder frames, the last one pooled alone (test_export.py
    checks every model at even frame counts)."""
    pytest.importorskip("onnxruntime")
    from voxemo.experiment import Experiment, build
    from voxemo.export import PARITY_ATOL, OnnxRunner, export_onnx

    pipe = build(Experiment(model="encoder_attentive", model_overrides={"layers": (0, 1, 2), "hidden": 8}), EMOTIONS)
    assert export_onnx(pipe.eval(), tmp_path / "a.onnx")["input_samples"] == "dynamic"
    x = np.stack([load_audio(DATA_CLIP)[:32200], load_audio(DATA_CLIP)[16000:48200]])
    assert encoder.output_frames(32200) == 101
    with torch.inference_mode():
        want = pipe(torch.from_numpy(x)).numpy()
    assert np.abs(OnnxRunner(tmp_path / "a.onnx").run(x) - want).max() < PARITY_ATOL


def test_a_killed_finetuning_run_resumes_where_an_uninterrupted_one_ends(tiny_file, tmp_path):
    """Checkpoints keep the fine-tuned blocks' lower learning rate (their optimiser group)."""
    from voxemo.features import FrontendConfig
    from voxemo.pipeline import Pipeline
    from voxemo.train import TrainConfig, fit

    encoder = load_whisper_encoder(tiny_file)
    x = torch.zeros(12, 3, 10, 64)
    for i in range(12):
        x[i, :, : 4 + i % 6] = torch.randn(3, 4 + i % 6, 64, generator=torch.Generator().manual_seed(i)) + 1
    y, cfg = torch.arange(12) % 3, TrainConfig(epochs=3, batch_size=4, lr=1e-2)

    def run(**kw):
        torch.manual_seed(0)
        model = create_model("encoder_attentive", n_classes=3, input_shape=(3, 0, 64), heads=4, ffn=128, hidden=8,
                             attention=8, finetune_blocks=1).load_encoder_blocks(encoder)
        pipe = Pipeline(FrontendConfig(kind="whisper_frames"), model, EMOTIONS, audio=AudioSettings(), encoder=encoder)
        fit(pipe, (x, y), None, cfg, precomputed=True, **kw)
        return pipe.state_dict()

    whole = run()
    run(checkpoint_dir=tmp_path, stop_after=1)
    resumed = run(checkpoint_dir=tmp_path, resume=True)
    for k, v in whole.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=0, msg=k)
    assert not torch.equal(whole["model.blocks.0.fc1.weight"], encoder.blocks[1].fc1.weight)
