"""Shared fixtures: the real corpora in ../shared/data, and a private waveform cache per test run."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"the tests read the real corpora in {DATA}; it is missing")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its decoded-waveform cache under pytest's tmp folder, never the user's."""
    monkeypatch.setenv("VOXEMO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "waveform-cache"))


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA
