"""The papers layer (voxemo.papers): a typed recipe per registered model, unknown training keys an
error, and the layer rules (models know nothing of features or training; no import circle)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voxemo.cli import app
from voxemo.config import ConfigError
from voxemo.experiment import Experiment
from voxemo.features import FrontendConfig
from voxemo.models import list_models
from voxemo.papers import RECIPES, model_recipe
from voxemo.train import OPTIMIZERS, TrainConfig

PACKAGE = Path(__file__).resolve().parents[1] / "voxemo"


def test_every_registered_model_has_a_recipe_and_every_recipe_a_model():
    assert set(RECIPES) == set(list_models())
    with pytest.raises(ValueError, match="no recipe for model 'resnet_9000'.*voxemo_net"):
        model_recipe("resnet_9000")


@pytest.mark.parametrize("name", list_models())
def test_recipe_is_typed_and_windows_exactly_when_per_window(name):
    r = model_recipe(name)
    assert isinstance(r.frontend, FrontendConfig) and isinstance(r.train, TrainConfig)
    assert r.train.optimizer in OPTIMIZERS and r.train.lr > 0 and r.paper and r.notes
    assert r.per_window == (r.frontend.window_frames is not None)
    assert {"optimizer", "lr", "batch_size", "epochs", "patience"} <= set(r.train_settings())


def test_papers_numbers_as_they_were_registered():
    """A few of the papers' settings, as the models registered them before they moved here."""
    t = model_recipe("cnn2d_mfcc").train
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.epochs, t.patience) == ("rmsprop", 1e-3, 0.0, 16, 100, 20)
    t = model_recipe("td_cnn_stft").train
    assert (t.optimizer, t.momentum, t.lr_decay, t.oversample) == ("sgd", 0.8, 1e-6, True)
    assert model_recipe("td_cnn_lstm").train.augment.noise_snr == (15.0, 30.0)
    assert model_recipe("td_cnn_lstm").frontend.chunks == 7
    assert model_recipe("conv1d_lstm").train.grad_clip == 1.0
    assert model_recipe("voxemo_net").train_settings()["augment"]["mixup_alpha"] == 0.2


def test_a_recipe_handed_out_is_a_copy():
    r = model_recipe("bilstm")
    r.train.lr, r.frontend.n_mfcc = 9.0, 3
    assert model_recipe("bilstm").train.lr == 1e-3 and model_recipe("lstm_mfcc_003").frontend.n_mfcc == 40


@pytest.mark.parametrize("train, key", [({"learning_rate": 0.1}, "learning_rate"),
                                        ({"augment": {"noize_snr": [10, 20]}}, "noize_snr")])
def test_an_unknown_training_key_is_an_error_naming_it(train, key):
    with pytest.raises(ConfigError, match=f"unknown key.*{key}.*valid: "):
        Experiment(model="bilstm", train=train).train_config()
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict(train)


def test_an_unknown_training_key_in_a_toml_config_is_an_error_naming_it(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('model = "bilstm"\n[train]\nepochs = 1\nlearning_rate = 0.1\n')
    r = CliRunner().invoke(app, ["cv", str(tmp_path), "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "unknown key" in r.output and "learning_rate" in r.output


def voxemo_imports(path: Path) -> set[str]:
    """Every voxemo module a file imports, at the top or inside a function, as absolute names."""
    package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)  # what `from .` means in the file
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            # from . import cnn: the names may be modules
            found |= {f"{module}.{a.name}" for a in node.names} if node.module is None else {module}
    return {m for m in found if m == "voxemo" or m.startswith("voxemo.")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_import_torch_and_the_registry_only(path):
    """Models are architecture: nothing of features, training or the papers' settings."""
    outside = {m for m in voxemo_imports(path) if m != "voxemo.models" and not m.startswith("voxemo.models.")}
    assert outside <= {"voxemo.config"}


def test_baseline_does_not_import_experiment():
    """experiment hands the SVM models to baseline; baseline must not import experiment back."""
    assert "voxemo.experiment" not in voxemo_imports(PACKAGE / "baseline.py")
    assert "voxemo.baseline" not in voxemo_imports(PACKAGE / "runs.py")


@pytest.mark.parametrize("order", [("baseline", "experiment"), ("experiment", "baseline")])
def test_baseline_and_experiment_import_in_either_order(order):
    code = "; ".join(f"import voxemo.{m}" for m in order)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
