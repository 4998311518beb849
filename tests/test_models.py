"""The same tests for every registered model (timm style): shape, backward, gradients, save/load."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from voxemo.features import Frontend
from voxemo.models import create_model, list_models, model_entry

# Smaller widths for the two heaviest paper models, so the suite stays fast; their paper sizes are
# built once in test_paper_defaults_build.
SMALL = {"td_cnn_stft": {"hidden": 64}, "cnn_stft": {"dense": 64}, "conv1d_lstm": {"filters": 32, "lstm": 32},
         "conv1d_lstm_speech": {"filters": 32, "lstm": 32}}
PAPERS = {"conv1d_lstm", "conv1d_lstm_speech", "td_cnn_lstm", "cnn1d_mean_mfcc", "cnn2d_mfcc", "lstm_mfcc",
          "cnn1d_baseline", "bilstm", "transformer", "cnn_stft", "lstm_stft", "td_cnn_stft", "voxemo_net"}


def features_for(name: str, batch: int = 2) -> torch.Tensor:
    """What the model's own front-end makes of 3 s of audio: (B, ...) or, per window, (B*C, F, W)."""
    entry = model_entry(name)
    torch.manual_seed(0)
    f = Frontend(entry.frontend)(torch.randn(batch, 48000) * 0.1)
    f = (f - f.mean()) / f.std()
    return f.flatten(0, 1) if entry.per_window else f


def make(name: str, **kw):
    x = features_for(name)
    torch.manual_seed(0)
    return create_model(name, n_classes=5, input_shape=tuple(x.shape[1:]), **{**SMALL.get(name, {}), **kw}), x


def test_registry_has_every_papers_model():
    assert PAPERS <= set(list_models())
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet_9000", n_classes=2, input_shape=(40, 301))


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_every_parameter_learns(name):
    model, x = make(name)
    model.train()
    y = model(x)
    assert y.shape == (x.shape[0], 5)
    assert torch.isfinite(y).all()
    torch.nn.functional.cross_entropy(y, torch.arange(x.shape[0]) % 5).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_save_and_load_give_identical_outputs(name, tmp_path):
    model, x = make(name)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    config = json.loads(json.dumps(dataclasses.asdict(model.config)))  # tuples come back as lists
    again = create_model(name, **config)
    again.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    assert again.config == model.config


def test_none_overrides_are_ignored():
    x = features_for("bilstm")
    m = create_model("bilstm", n_classes=3, input_shape=tuple(x.shape[1:]), hidden=None)
    assert m.config.hidden == 128 and m.name == "bilstm"
    with pytest.raises(TypeError, match="unknown fields"):
        create_model("bilstm", n_classes=3, input_shape=(40, 301), hiddn=64)


def test_paper_defaults_build():
    for name in ("td_cnn_stft", "cnn_stft", "conv1d_lstm"):
        x = features_for(name, batch=1)
        m = create_model(name, n_classes=7, input_shape=tuple(x.shape[1:])).eval()
        with torch.no_grad():
            assert m(x).shape == (x.shape[0], 7)
    assert create_model("td_cnn_stft", n_classes=7, input_shape=(128, 128)).config.hidden == 1024


def test_voxemo_net_takes_any_length():
    m = create_model("voxemo_net", n_classes=8, input_shape=(64, 301)).eval()
    with torch.no_grad():
        for t in (40, 301, 1000):
            assert m(torch.randn(2, 64, t)).shape == (2, 8)
