"""Training: determinism, resume, early stopping on validation, optimisers; pipeline files."""

import json

import numpy as np
import pytest
import torch

from voxemo.audio import AudioSettings
from voxemo.cache import WaveformCache
from voxemo.corpora import scan
from voxemo.pipeline import PipelineError, load_pipeline
from voxemo.experiment import Experiment, build
from voxemo.splits import labels_for
from voxemo.train import TrainConfig, class_weight_tensor, fit, lr_factor, soft_cross_entropy

from .conftest import DATA

AUDIO = AudioSettings(16000, 0.5, 1.5)


@pytest.fixture(scope="module")
def small():
    """Four actors of RAVDESS speech, four emotions: 2 actors train, 1 validation, 1 test."""
    utts = [u for u in scan(DATA / "ravdess_speech") if u.speaker in {"ravdess:01", "ravdess:02", "ravdess:03", "ravdess:04"}
            and u.emotion in {"neutral", "happy", "sad", "angry"}]
    y, classes = labels_for(utts)
    waves = torch.from_numpy(np.stack([AUDIO.crop(x) for x in WaveformCache(AUDIO).load_many([u.path for u in utts])]))
    spk = np.array([u.speaker for u in utts])
    part = {p: torch.as_tensor(np.flatnonzero(np.isin(spk, s))) for p, s in
            (("train", ["ravdess:01", "ravdess:02"]), ("val", ["ravdess:03"]), ("test", ["ravdess:04"]))}
    return waves, torch.as_tensor(y), classes, part


def exp(**train):
    return Experiment(model="cnn1d_baseline", audio=AUDIO,
                      train={"epochs": 3, "batch_size": 16, "patience": None, **train})


def run(small, e, **kw):
    waves, y, classes, part = small
    pipe = build(e, classes)
    h = fit(pipe, (waves[part["train"]], y[part["train"]]), (waves[part["val"]], y[part["val"]]), e.train_config(), **kw)
    return pipe, h


def weights(pipe):
    return torch.cat([v.flatten().float() for v in pipe.state_dict().values()])


def test_same_seed_same_result_and_other_seed_differs(small):
    a, ha = run(small, exp(augment={"specaugment": True, "mixup_alpha": 0.2, "noise_snr": (15.0, 30.0)}))
    b, hb = run(small, exp(augment={"specaugment": True, "mixup_alpha": 0.2, "noise_snr": (15.0, 30.0)}))
    assert torch.equal(weights(a), weights(b)) and ha.epochs == hb.epochs
    c, _ = run(small, Experiment(model="cnn1d_baseline", audio=AUDIO, seed=1, train={"epochs": 3, "batch_size": 16}))
    assert not torch.equal(weights(a), weights(c))


def test_killed_run_resumes_and_ends_where_an_uninterrupted_run_does(small, tmp_path):
    e = exp(epochs=4, schedule="onecycle", warmup_epochs=1, augment={"specaugment": True, "mixup_alpha": 0.2})
    whole, h_whole = run(small, e)
    run(small, e, checkpoint_dir=tmp_path / "ck", stop_after=2)  # killed after two epochs
    assert json.loads((tmp_path / "ck" / "last.json").read_text())["next_epoch"] == 2
    resumed, h_resumed = run(small, e, checkpoint_dir=tmp_path / "ck", resume=True)
    assert torch.equal(weights(whole), weights(resumed))
    assert h_whole.epochs == h_resumed.epochs and h_whole.best_epoch == h_resumed.best_epoch


def test_validation_features_kept_or_recomputed_give_the_same_run(small, monkeypatch):
    """Validation features are computed once when they fit in memory; a run that must recompute
    them every epoch (a large validation set) ends with the same weights and the same history."""
    import voxemo.train

    e = exp(augment={"specaugment": True})
    kept, h_kept = run(small, e)
    monkeypatch.setattr(voxemo.train, "VAL_CACHE_BYTES", 0)
    recomputed, h_recomputed = run(small, e)
    assert torch.equal(weights(kept), weights(recomputed))
    assert h_kept.epochs == h_recomputed.epochs and h_kept.epochs[-1]["val_loss"] is not None


@pytest.mark.parametrize("model, augment", [
    ("cnn1d_baseline", {"specaugment": True, "mixup_alpha": 0.2}),  # SpecAugment and mixup on features
    ("cnn1d_baseline", {"noise_snr": (15.0, 30.0), "noisy_copies": 2}),  # fixed noisy copies (seed 003_2f41)
    ("td_cnn_lstm", {}),  # chunked log-mel
    ("td_cnn_stft", {}),  # per-window STFT patches
])
def test_features_once_per_run_give_the_same_weights_as_features_per_batch(small, model, augment):
    """Without waveform augmentation that varies per epoch, a run computes its training features
    (and those of its fixed noisy copies) once and normalises them once; the same seed then gives
    bit for bit the weights and history that computing them from the waveforms every batch gives."""
    overrides = {"td_cnn_lstm": {"lstm": 16}, "td_cnn_stft": {"hidden": 16}}.get(model, {})
    e = Experiment(model=model, audio=AudioSettings(16000, 0.5, 1.0), model_overrides=overrides,
                   train={"epochs": 2, "batch_size": 16, "patience": None, "augment": augment})
    once, h_once = run(small, e)
    per_batch, h_per_batch = run(small, e, feature_memory=0)
    assert torch.equal(weights(once), weights(per_batch))
    assert h_once.epochs == h_per_batch.epochs


def test_features_are_computed_once_only_when_waves_do_not_change(small, monkeypatch):
    """The front-end runs per batch when the waveforms change every epoch (noise on every batch, gain,
    shift, speed) and once per run otherwise: counted by its calls."""
    import voxemo.features

    calls = []
    forward = voxemo.features.Frontend.forward
    monkeypatch.setattr(voxemo.features.Frontend, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    n_train = len(small[3]["train"])
    for augment, per_batch in (({}, False), ({"gain_db": 3.0}, True), ({"noise_snr": (15.0, 30.0)}, True),
                               ({"noise_snr": (15.0, 30.0), "noisy_copies": 1}, False)):
        calls.clear()
        run(small, exp(epochs=3, augment=augment))
        copies = augment.get("noisy_copies", 0)
        # validation features are kept either way (and `build` and the validation cache probe one
        # clip each); training clips go through the front-end once (after a one-clip memory probe),
        # or once for the normaliser and then every epoch
        trained = sum(calls) - len(small[3]["val"]) - 2
        expected = n_train + 3 * n_train if per_batch else 1 + (1 + copies) * n_train
        assert trained == expected, augment


def test_best_validation_epoch_is_kept_and_early_stopping(small):
    e = exp(epochs=12, patience=2, lr=0.05)
    pipe, h = run(small, e)
    waves, y, classes, part = small
    scores = [r["val_ua"] for r in h.epochs]
    assert h.best_epoch == int(np.argmax(scores)) and h.best_score == max(scores)
    assert len(h.epochs) == 12 or h.stopped_early and len(h.epochs) == h.best_epoch + 3
    from voxemo.evaluate import classification_metrics

    probs = pipe.run(waves[part["val"]].numpy())
    assert classification_metrics(y[part["val"]].numpy(), probs.argmax(1), list(range(4)))["ua"] == pytest.approx(h.best_score)


def parameters(pipe):
    return torch.cat([v.detach().flatten() for v in pipe.model.parameters()])


def test_average_last_keeps_the_mean_of_the_last_epochs_weights_and_resumes(small, tmp_path):
    """average_last=3 of 5 epochs: the model's parameters are the mean of those after epochs 3, 4
    and 5 (runs without validation keep their last epoch), validation chooses nothing (no early
    stop) and the kept score is the averaged weights' own; a killed run resumes to the same."""
    waves, y, classes, part = small
    train = (waves[part["train"]], y[part["train"]])
    lasts = []
    for epochs in (3, 4, 5):
        e = exp(epochs=epochs, lr=0.05)
        pipe = build(e, classes)
        fit(pipe, train, None, e.train_config())
        lasts.append(parameters(pipe))
    e = exp(epochs=5, lr=0.05, patience=1, average_last=3)
    averaged, h = run(small, e)
    assert len(h.epochs) == 5 and not h.stopped_early
    assert torch.allclose(parameters(averaged), torch.stack(lasts).mean(0), atol=1e-6)
    assert not torch.allclose(parameters(averaged), lasts[-1], atol=1e-4)
    from voxemo.evaluate import classification_metrics

    probs = averaged.run(waves[part["val"]].numpy())
    assert classification_metrics(y[part["val"]].numpy(), probs.argmax(1), list(range(4)))["ua"] == pytest.approx(h.best_score)
    run(small, e, checkpoint_dir=tmp_path / "ck", stop_after=4)  # killed inside the averaging window
    resumed, h_resumed = run(small, e, checkpoint_dir=tmp_path / "ck", resume=True)
    assert torch.equal(weights(averaged), weights(resumed)) and h_resumed.best_score == h.best_score
    with pytest.raises(ValueError, match="average_last"):
        TrainConfig(epochs=5, average_last=6)


@pytest.mark.parametrize("opt", ["adam", "adamw", "rmsprop", "sgd"])
def test_every_optimizer_lowers_the_training_loss(small, opt):
    lr = {"sgd": 0.05, "rmsprop": 1e-3}.get(opt, 3e-3)
    _, h = run(small, exp(optimizer=opt, lr=lr, epochs=4, class_weights=True, oversample=opt == "sgd",
                          grad_clip=1.0, lr_decay=1e-4 if opt == "sgd" else 0.0))
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]


def test_class_weights_ignore_a_label_no_training_clip_carries():
    """A label set shared across corpora names classes a training corpus lacks (EmoDB has no
    "surprised"): weighed, with label smoothing, the loss must still teach each clip its own class."""
    y = torch.tensor([0] * 300 + [1] * 150 + [2] * 150 + [3] * 100)  # class 4: no clip
    w = class_weight_tensor(y, 5)
    assert w[4] == 0 and torch.all(w[:4] > 0) and w[y].mean() == pytest.approx(1.0)
    assert w[3] / w[0] == pytest.approx(3.0)  # inverse frequency among the classes present
    logits = torch.zeros(4, 5, requires_grad=True)  # what the model says for a clip of each class
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        loss = soft_cross_entropy(logits[y], torch.nn.functional.one_hot(y, 5).float(), w, smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logits.argmax(1).tolist() == [0, 1, 2, 3]


def test_schedules():
    cfg = TrainConfig(schedule="onecycle", warmup_epochs=1, epochs=10)
    f = [lr_factor(cfg, s, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[-1] < 0.01
    assert lr_factor(TrainConfig(schedule="step", step_size=3, step_gamma=0.5), 35, 10) == 0.5
    assert lr_factor(TrainConfig(lr_decay=1e-2), 100, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")


def test_pipeline_saves_and_loads_without_pickle(small, tmp_path):
    waves, y, classes, part = small
    pipe, _ = run(small, exp(epochs=1))
    pipe.meta["protocol"] = "test"
    w, j = pipe.save(tmp_path / "p")
    assert w.name == "p.safetensors" and j.name == "p.json"
    desc = json.loads(j.read_text())
    assert desc["labels"] == classes and desc["model"]["name"] == "cnn1d_baseline" and desc["protocol"] == "test"
    again = load_pipeline(tmp_path / "p")
    x = waves[part["test"]]
    np.testing.assert_array_equal(again.run(x.numpy()), pipe.run(x.numpy()))
    assert torch.equal(again.normalizer.mean, pipe.normalizer.mean)
    with pytest.raises(FileExistsError):
        pipe.save(tmp_path / "p")
    with pytest.raises(PipelineError, match="not found"):
        load_pipeline(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.safetensors").write_bytes(w.read_bytes())
    with pytest.raises(PipelineError, match="bad.json"):
        load_pipeline(tmp_path / "bad")
    (tmp_path / "p.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(PipelineError, match="p.safetensors"):
        load_pipeline(tmp_path / "p")


def test_batchnorm_statistics_recomputed_with_dropout_off(small):
    """recompute_batchnorm: each BatchNorm's running mean and variance become those of its input over
    the given batches with dropout off; fit with recompute_bn keeps weights whose statistics are
    exactly those over the training batches (seed004's TD-CNN + LSTM predicted one class in
    evaluation with the statistics gathered while dropout was on)."""
    from voxemo.train import feature_batches, recompute_batchnorm

    waves, y, classes, part = small
    x = waves[part["train"]]
    e = exp(recompute_bn=True)
    pipe, _ = run(small, e)
    norms = [m for m in pipe.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    kept = [m.running_mean.clone() for m in norms]
    assert recompute_batchnorm(pipe, feature_batches(pipe, x, e.train_config().batch_size))
    for mean, m in zip(kept, norms):  # what fit kept is the recomputation on the kept weights
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-4, atol=1e-5)
    assert norms[1].momentum == 0.1 and not pipe.training

    seen = []
    hook = norms[1].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    recompute_batchnorm(pipe, feature_batches(pipe, x, len(x)))  # one batch: its own statistics
    hook.remove()
    inp = seen[0].transpose(0, 1).flatten(1)  # (C, N * T): the second BatchNorm's input, downstream of a Dropout
    torch.testing.assert_close(norms[1].running_mean, inp.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norms[1].running_var, inp.var(1), rtol=1e-3, atol=1e-5)

    plain, _ = run(small, exp())  # without it, the statistics are training's, not a recomputation's
    before = [m.running_mean.clone() for m in plain.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    recompute_batchnorm(plain, feature_batches(plain, x, e.train_config().batch_size))
    after = [m.running_mean for m in plain.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(before, after))
