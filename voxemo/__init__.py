"""voxemo: recognise emotion in speech and song."""

__version__ = "0.1.0"

_LAZY = {"load_model": "predict", "Predictor": "predict"}  # imported on first use: `import voxemo` stays fast


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
