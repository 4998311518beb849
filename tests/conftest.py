"""Shared fixtures: the real corpora in ../shared/data, a private waveform cache per test run, one torch thread."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"the tests read the real corpora in {DATA}; it is missing")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its decoded-waveform cache under pytest's tmp folder, never the user's."""
    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "waveform-cache"))


def link_actors(root: Path, corpus: str = "ravdess_speech", actors=range(1, 7), pattern: str | None = None) -> Path:
    """RAVDESS actors of `corpus` linked into root/Actor_NN (root made if need be): each actor's whole
    folder, or with `pattern` (a glob) only its matching files. Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    for a in actors:
        name = f"Actor_{a:02d}"
        if pattern is None:
            (root / name).symlink_to(DATA / corpus / name)
            continue
        (root / name).mkdir()
        for f in (DATA / corpus / name).glob(pattern):
            (root / name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tests (small batches are faster so, and the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
