"""The same tests for every registered model (timm style): shape, backward, gradients, save/load.

Each model is fed what its own front-end makes of 3 s of noise at 16 kHz (B = 2 clips; per-window
models get the first (F, W) window of each clip), so a front-end and a model that disagree on shapes
fail here, not in a training run.
"""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from voxemo.features import Frontend
from voxemo.models import Dropout, create_model, list_models, model_entry
from voxemo.papers import model_recipe

# Smaller widths for the heaviest paper models so the parametrised tests stay fast; every model is
# built at its paper size in test_paper_defaults_forward. Only these fields are ever shrunk.
SMALL = {"td_cnn_stft": {"hidden": 64}, "cnn_stft": {"dense": 64}, "conv1d_lstm": {"filters": 32, "lstm": 32},
         "conv1d_lstm_speech": {"filters": 32, "lstm": 32}}
EXPECTED = {
    "conv1d_lstm", "conv1d_lstm_speech",  # seed 000_9bc1
    "td_cnn_lstm",  # seed 001_289f
    "cnn1d_mean_mfcc", "cnn2d_mfcc", "lstm_mfcc",  # seed 002_0b61
    "cnn1d_baseline", "cnn1d_baseline_mel", "bilstm", "bilstm_mel", "lstm_mfcc_003", "lstm_mel",  # seed 003_2f41
    "transformer", "transformer_mel",
    "cnn_stft", "lstm_stft", "td_cnn_stft",  # seed 004_d4c4
    "voxemo_net",  # ours
}
B, K = 2, 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches of two are faster on one thread, and a second thread only spins when the cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def features_for(name: str) -> torch.Tensor:
    """What the model's own front-end makes of B clips of 3 s: (B, ...) or, per window, (B, F, W)."""
    recipe = model_recipe(name)
    torch.manual_seed(0)
    if recipe.frontend.kind == "whisper":  # a frozen encoder's statistics (B, L + 1, 2, D); a small stand-in
        return torch.randn(B, 7, 2, 32)
    if recipe.frontend.kind == "whisper_frames":  # its frames (B, L + 1, S, D), the second clip shorter (zeros)
        return torch.randn(B, 7, 20, 32) * (torch.arange(20) < torch.tensor([[20], [13]]))[:, None, :, None]
    f = Frontend(recipe.frontend)(torch.randn(B, 48000) * 0.1)
    f = (f - f.mean()) / f.std()
    return f[:, 0] if recipe.per_window else f  # per window: the first window of each clip


def make(name: str, small: bool = True, **kw):
    x = features_for(name)
    torch.manual_seed(0)
    over = SMALL.get(name, {}) if small else {}
    return create_model(name, n_classes=K, input_shape=tuple(x.shape[1:]), **{**over, **kw}), x


def test_registry_has_every_papers_model():
    assert EXPECTED <= set(list_models())
    assert list_models() == sorted(list_models())
    with pytest.raises(ValueError, match="unknown model 'resnet_9000'.*bilstm.*voxemo_net"):
        create_model("resnet_9000", n_classes=2, input_shape=(40, 301))


@pytest.mark.parametrize("name", list_models())
def test_entry_names_and_documents_the_model(name):
    entry = model_entry(name)
    assert entry.name == name and entry.doc
    model, x = make(name)
    assert model.name == name
    assert model.config.n_classes == K and model.config.input_shape == tuple(x.shape[1:])


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_every_parameter_learns(name):
    model, x = make(name)
    model.train()
    y = model(x)
    members = getattr(model.config, "members", None)  # an ensemble trains one set of logits per member
    assert y.shape == ((B, members, K) if members else (B, K))
    assert torch.isfinite(y).all()
    target = torch.arange(B) % K
    torch.nn.functional.cross_entropy(y.flatten(0, -2), target.repeat_interleave(y.numel() // (B * K))).backward()
    for pname, p in model.named_parameters():  # BatchNorm weights and biases included
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


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
    assert again.config == model.config and again.name == name


@pytest.mark.parametrize("name", list_models())
def test_paper_defaults_forward(name):
    model, x = make(name, small=False)
    defaults = model_entry(name).fn(n_classes=K, input_shape=tuple(x.shape[1:])).config
    assert model.config == defaults  # no test override leaked in
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (B, K) and torch.isfinite(y).all()


def test_paper_sizes_where_the_tests_shrink_them():
    assert create_model("td_cnn_stft", n_classes=7, input_shape=(128, 128)).config.hidden == 1024
    assert create_model("cnn_stft", n_classes=7, input_shape=(128, 128)).config.dense == 1024
    c = create_model("conv1d_lstm", n_classes=7, input_shape=(12, 301)).config
    assert (c.filters, c.kernel, c.lstm) == (256, 5, 256)
    assert create_model("conv1d_lstm_speech", n_classes=7, input_shape=(12, 301)).config.dropout_between_lstms is False


def test_none_overrides_never_shadow_a_models_own_defaults():
    # lstm_stft registers hidden=256 and dropout=0.25 over RNNConfig's 128 and 0.2
    m = create_model("lstm_stft", n_classes=3, input_shape=(128, 128), hidden=None, dropout=None, layers=None)
    assert (m.config.hidden, m.config.dropout, m.config.layers) == (256, 0.25, 3) and m.name == "lstm_stft"
    assert create_model("lstm_stft", n_classes=3, input_shape=(128, 128), hidden=32).config.hidden == 32
    with pytest.raises(TypeError, match="unknown key"):
        create_model("bilstm", n_classes=3, input_shape=(40, 301), hiddn=64)


def test_json_lists_rebuild_the_same_config():
    m = create_model("voxemo_net", n_classes=4, input_shape=[64, 151], channels=[16, 32, 64, 96],
                     strides=[[2, 2], [2, 2], [2, 1], [2, 1]])
    assert m.config == create_model("voxemo_net", n_classes=4, input_shape=(64, 151)).config
    assert isinstance(m.config.strides[0], tuple)


def test_voxemo_net_takes_any_length():
    m = create_model("voxemo_net", n_classes=8, input_shape=(64, 301)).eval()
    with torch.no_grad():
        for t in (50, 301, 1000):
            assert m(torch.randn(2, 64, t)).shape == (2, 8)


def test_fixed_length_models_name_the_length_they_need():
    m = create_model("conv1d_lstm", n_classes=4, input_shape=(12, 301), filters=8, lstm=8).eval()
    with pytest.raises(ValueError, match="built for 301 frames.*got 200"):
        m(torch.randn(1, 12, 200))


@pytest.mark.parametrize("name, overrides", [("lstm_stft", {}), ("lstm_mfcc", {}), ("td_cnn_lstm", {}),
                                             ("conv1d_lstm", {"keras_init": True})])
def test_papers_lstms_start_from_keras_weights(name, overrides):
    """The papers trained Keras LSTMs: forget-gate bias 1, other biases 0, orthogonal recurrent
    weights per gate (PyTorch's default left seed 004's LSTMs at chance under its SGD)."""
    torch.manual_seed(0)
    lstms = [m for m in create_model(name, n_classes=7, **overrides).modules() if isinstance(m, torch.nn.LSTM)]
    assert lstms
    for lstm in lstms:
        h = lstm.hidden_size
        for pname, w in lstm.named_parameters():
            if pname.startswith("bias_ih"):
                assert torch.equal(w[h:2 * h], torch.ones(h)) and not w[:h].any() and not w[2 * h:].any()
            elif pname.startswith("bias_hh"):
                assert not w.any()
            elif pname.startswith("weight_hh"):
                gate = w[h:2 * h].detach()  # the forget gate's block
                assert torch.allclose(gate @ gate.T, torch.eye(h), atol=1e-4)


def test_conv1d_lstm_keeps_torch_weights_by_default():
    """Seed 000's net diverged from Keras' weights under its Adam at lr 0.01 (see its docstring)."""
    torch.manual_seed(0)
    lstm = create_model("conv1d_lstm", n_classes=6).lstm1.first
    h = lstm.hidden_size
    assert lstm.bias_hh_l0.abs().sum() > 0 and not torch.equal(lstm.bias_ih_l0[h:2 * h], torch.ones(h))


def test_transformer_pools_frames_into_tokens():
    torch.manual_seed(0)
    model = create_model("transformer", n_classes=8, pool=4).eval()
    seen = {}
    model.proj.register_forward_hook(lambda m, i, o: seen.update(tokens=o.shape[1]))
    assert model(torch.randn(2, 40, 301)).shape == (2, 8)
    assert seen["tokens"] == 76  # ceil(301 / 4)
    assert create_model("transformer", n_classes=8, pool=1)(torch.randn(2, 40, 37)).shape == (2, 8)


# --- faster layouts, same math (issue 14) ------------------------------------------------------------

def _as_before(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a model computed as before issue 14: weights in the default layout, ReLU before
    MaxPool in every td_cnn block, nn.Dropout (as benchmarks/train.py's `as_before`)."""
    import copy

    old = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    if hasattr(old, "cnn"):
        for block in old.cnn:  # conv, bn, pool, relu, drop -> conv, bn, relu, pool, drop
            block[2], block[3] = block[3], block[2]
    for parent in list(old.modules()):
        for name, child in parent.named_children():
            if type(child) is Dropout:
                setattr(parent, name, torch.nn.Dropout(child.p))
    assert not any(type(m) is Dropout for m in old.modules())
    return old


def _outputs_and_grads(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("name, overrides, shape", [
    ("td_cnn_stft", {"hidden": 32, "dropout": 0.0}, (3, 128, 128)),
    ("td_cnn_lstm", {"lstm": 32, "dropout": 0.0}, (3, 7, 128, 43)),
    ("cnn2d_mfcc", {"dropout": 0.0}, (3, 40, 301)),
    ("conv1d_lstm", {"dropout": 0.0}, (3, 12, 301)),
])
def test_faster_layout_gives_the_same_outputs_and_gradients(name, overrides, shape):
    """Channels-last weights, MaxPool before ReLU and our Dropout: the outputs, the input's gradient
    and every weight's gradient equal those of the model computed as before, for the same weights
    (training mode, batch statistics; dropout off so both see the same masks: the masks' math is
    test_dropout_is_nn_dropouts_math's)."""
    torch.manual_seed(0)
    # In float64, so rounding cannot move a MaxPool's choice between two near-equal values (float32
    # rounds differently in the two layouts, and at such near-ties sends a gradient elsewhere).
    new = create_model(name, n_classes=K, input_shape=shape[1:], **overrides).double()
    new = new.to(memory_format=torch.channels_last) if hasattr(new, "cnn") else new
    old = _as_before(new)
    x = torch.randn(shape, dtype=torch.float64)
    for m in (new, old):
        m.train()
    out_new, gx_new, g_new = _outputs_and_grads(new, x)
    out_old, gx_old, g_old = _outputs_and_grads(old, x)
    torch.testing.assert_close(out_new, out_old, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gx_new, gx_old, rtol=1e-9, atol=1e-12)
    assert g_new.keys() == g_old.keys()
    for n in g_new:
        torch.testing.assert_close(g_new[n], g_old[n], rtol=1e-9, atol=1e-12, msg=n)
    new.eval(), old.eval()
    torch.testing.assert_close(new(x), old(x), rtol=1e-9, atol=1e-12)
    assert new.state_dict().keys() == old.state_dict().keys()  # saved files do not change


def test_dropout_is_nn_dropouts_math():
    """Our Dropout (a cheaper mask): each value kept with probability 1 - p and scaled by 1 / (1 - p),
    the others zero, the gradient through the same mask; a seed fixes the mask; eval mode and p = 0
    leave the input alone; the memory layout is kept."""
    p = 0.2
    drop = Dropout(p).train()
    torch.manual_seed(0)
    x = torch.randn(1000, 1000, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    out = drop(x)
    g = torch.randn_like(x)
    out.backward(g)
    kept = out != 0  # x is never exactly 0
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * ((p * (1 - p)) / kept.numel()) ** 0.5
    torch.testing.assert_close(out, torch.where(kept, x / (1 - p), 0.0).detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(x.grad, torch.where(kept, g / (1 - p), 0.0), rtol=1e-15, atol=0)
    torch.manual_seed(1)
    assert torch.equal(drop(x.detach()), out.detach())
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    y = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    assert drop.train()(y).is_contiguous(memory_format=torch.channels_last)


def test_ensemble_averages_its_members_probabilities_and_trains_each_on_its_own_loss():
    """encoder_ensemble: in evaluation the log of the members' mean probability; in training each
    member's gradient is that of its own loss alone (the loss `train.fit` takes: the mean over members),
    so members do not learn to make up for each other."""
    from voxemo.train import soft_cross_entropy

    model, x = make("encoder_ensemble", members=3, dropout=0.0)
    model.eval()
    with torch.no_grad():
        mean_p = torch.stack([h(x).softmax(-1) for h in model.heads]).mean(0)
        torch.testing.assert_close(model(x).exp(), mean_p)
    model.train()
    target = torch.nn.functional.one_hot(torch.arange(B) % K, K).float()
    logits = model(x)
    soft_cross_entropy(logits, target[:, None].expand(-1, 3, -1), None, 0.1).backward()
    joint = [p.grad.clone() for p in model.heads[1].parameters()]
    model.zero_grad()
    soft_cross_entropy(model.heads[1](x), target, None, 0.1).backward()
    for g, alone in zip(joint, model.heads[1].parameters()):
        torch.testing.assert_close(g * 3, alone.grad)
    assert not torch.equal(model.heads[0].mlp[1].weight, model.heads[1].mlp[1].weight)  # initialised apart
    with pytest.raises(ValueError, match="members must be at least 1"):
        make("encoder_ensemble", members=0)
