"""HTTP service and web page: `create_app(predictor)` builds the FastAPI app; `voxemo serve` runs it.

FastAPI and uvicorn are optional (`pip install voxemo[serve]`): importing `voxemo.serve` does not import
them; `create_app` does.
"""

from __future__ import annotations


def create_app(predictor, **limits):
    """The FastAPI app around a `voxemo.predict.Predictor` (see `voxemo.serve.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(predictor, **limits)


__all__ = ["create_app"]
