"""Late fusion: several trained pipelines heard as one model.

A `Fusion` gives each clip the weighted mean of its members' probabilities. Each member hears the
decoded clip through its own `AudioSettings.windows` (voxemo_net a 3 s crop after 0.5 s, an encoder
head the whole clip), so members that were trained on different cuts of the audio keep them; what
they must share is how a file is decoded (sample rate and trimming: one decode, one voice-activity
check), the task and the labels, in the same order. Song is where this pays (RESULTS.md: the frozen
encoder and voxemo_net's log-mel branch err on different clips; `benchmarks/fusion.py`).

A fusion quacks like a `Pipeline` where serving and scoring look (`labels`, `task`, `audio`, `meta`,
`name`, `speaker_norm`, `hear`, `eval`), so `voxemo predict`, `evaluate`, `serve` and the bulk path
take one; `Predictor` runs it member by member (torch or ONNX Runtime). A member trained with
per-speaker normalisation makes the fusion score a speaker's clips together (`evaluate` only), as
the member alone does. One ONNX graph per member: `voxemo export` exports members, not a fusion.

Saved as a folder, and loading never runs code: `fusion.json` (format, labels, task, each member's
file name and weight) and one pipeline per member beside it (`member1.json` + `.safetensors`, ...).
The weights are given (equal by default), fixed before any test clip is seen; `choose_weights` picks
two members' weights on labelled held-out clips (validation speakers, never a test fold).

Letters: B clips, K classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .audio import AudioSettings
from .pipeline import Pipeline, PipelineError, load_pipeline, pipeline_files

FORMAT = "voxemo-fusion/1"
FUSION_FILE = "fusion.json"  # the description inside a fusion's folder


class Fusion:
    """Pipelines fused late: probabilities (B, K) = sum over members of weight x member's (B, K).

    members: two or more pipelines with the same labels (same order), task, sample rate and trim.
    weights: one positive number per member (default equal), scaled to sum to 1.
    """

    def __init__(self, members: Sequence[Pipeline], weights: Sequence[float] | None = None):
        self.members = list(members)
        if len(self.members) < 2:
            raise PipelineError(f"a fusion needs at least two pipelines, not {len(self.members)}")
        if any(isinstance(m, Fusion) for m in self.members):
            raise PipelineError("fuse pipelines, not fusions: list the members of a fusion instead")
        first = self.members[0]
        for i, m in enumerate(self.members[1:], 2):
            if m.labels != first.labels:
                raise PipelineError(f"member {i} ({m.name}) has labels {', '.join(m.labels)}; member 1 ({first.name}) "
                                    f"has {', '.join(first.labels)}: a fusion's members share labels in one order")
            if m.task != first.task:
                raise PipelineError(f"member {i} ({m.name}) classifies {m.task}, member 1 ({first.name}) {first.task}")
            if (m.audio.sample_rate, m.audio.trim) != (first.audio.sample_rate, first.audio.trim):
                raise PipelineError(f"member {i} ({m.name}) decodes at {m.audio.sample_rate} Hz with trim {m.audio.trim}, "
                                    f"member 1 ({first.name}) at {first.audio.sample_rate} Hz with trim {first.audio.trim}: "
                                    "a fusion's members decode a file alike")
        w = [1.0] * len(self.members) if weights is None else [float(v) for v in weights]
        if len(w) != len(self.members) or not all(np.isfinite(v) and v > 0 for v in w):
            raise PipelineError(f"a fusion needs one positive weight per member ({len(self.members)}), not {list(weights)}")
        self.weights = [v / sum(w) for v in w]
        self.labels = list(first.labels)
        self.task = first.task
        # how a file is decoded, shared by every member; each member cuts its own windows
        self.audio = AudioSettings(sample_rate=first.audio.sample_rate, trim=first.audio.trim)
        licences = list(dict.fromkeys(m.meta["licence"] for m in self.members if "licence" in m.meta))
        self.meta = {"corpora": sorted({c for m in self.members for c in m.meta.get("corpora", [])}),
                     **({"licence": "; ".join(licences)} if licences else {}),
                     "members": [{"model": m.name, "weight": round(v, 6), "speaker_norm": m.speaker_norm}
                                 for m, v in zip(self.members, self.weights)]}

    @property
    def name(self) -> str:
        return "fusion of " + " + ".join(m.name for m in self.members)

    @property
    def speaker_norm(self) -> bool:
        """Whether some member standardises each speaker over their clips (then clips are scored by speaker)."""
        return any(m.speaker_norm for m in self.members)

    def eval(self) -> "Fusion":
        for m in self.members:
            m.eval()
        return self

    def hear(self, clips: Sequence[np.ndarray], speakers: Sequence[str] | None = None) -> np.ndarray:
        """Decoded clips (`audio.decode`) -> probabilities (B, K): each member hears them its own way
        (`Pipeline.hear`), and the fusion weighs their probabilities."""
        return self.weigh([m.hear(clips, speakers if m.speaker_norm else None) for m in self.members])

    def weigh(self, member_probs: Sequence[np.ndarray]) -> np.ndarray:
        """The members' probabilities (each (B, K), in member order) -> the fusion's (B, K)."""
        return sum(w * p for w, p in zip(self.weights, member_probs))

    def describe(self) -> dict:
        return {"format": FORMAT, "voxemo_version": __version__, "labels": self.labels, "task": self.task,
                "members": [{"pipeline": f"member{i}", "weight": w} for i, w in enumerate(self.weights, 1)]}

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write `folder/fusion.json` and each member as `folder/memberN` (a pipeline); the description's path."""
        folder = Path(folder)
        config = folder / FUSION_FILE
        files = [config] + [f for i in range(1, len(self.members) + 1) for f in pipeline_files(folder / f"member{i}")]
        if not overwrite:
            for p in files:
                if p.exists():
                    raise FileExistsError(f"{p} exists; pass overwrite=True (CLI: --force) to replace it")
        for i, m in enumerate(self.members, 1):
            m.save(folder / f"member{i}", overwrite=overwrite)
        config.write_text(json.dumps(self.describe(), indent=2))
        return config


WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the first member's weight: 0.1 .. 0.9


def choose_weights(member_probs: Sequence[np.ndarray], y: np.ndarray, grid: Sequence[float] = WEIGHT_GRID
                   ) -> tuple[list[float], float]:
    """Two members' probabilities (each (B, K)) on labelled held-out clips and their labels (B,) ->
    ([w, 1 - w], UA): the first member's weight w from `grid` whose fusion scores the highest UA on
    those clips (ties: the w nearest equal weights). Give it validation speakers' clips, never a test
    fold's: what it picks is then fixed, as `Fusion` wants."""
    from .evaluate import classification_metrics

    if len(member_probs) != 2:
        raise ValueError(f"choose_weights weighs two members, not {len(member_probs)}")
    a, b = (np.asarray(p, dtype=np.float64) for p in member_probs)
    y = np.asarray(y)
    if a.shape != b.shape or a.ndim != 2 or len(y) != len(a) or not len(y):
        raise ValueError(f"probabilities {a.shape} and {b.shape} and labels ({len(y)},) do not match")
    classes = list(range(a.shape[1]))
    scores = {w: classification_metrics(y, (w * a + (1 - w) * b).argmax(1), classes)["ua"] for w in grid}
    w = max(grid, key=lambda v: (scores[v], -abs(v - 0.5)))
    return [w, round(1 - w, 6)], scores[w]


def is_fusion(path: str | os.PathLike) -> bool:
    """Whether `path` is a fusion: its folder (holding fusion.json) or the fusion.json itself."""
    p = Path(path)
    return (p / FUSION_FILE).is_file() or (p.name == FUSION_FILE and p.is_file())


def load_fusion(path: str | os.PathLike, encoder: str | os.PathLike | None = None) -> Fusion:
    """A saved fusion (its folder, or its fusion.json); JSON and safetensors only. `encoder`: a local
    copy of the pretrained encoder for members that need one. Raises PipelineError."""
    p = Path(path)
    config = p if p.name == FUSION_FILE else p / FUSION_FILE
    try:
        desc = json.loads(config.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{config}: fusion description not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{config}: not a voxemo fusion description ({e})") from None
    if desc.get("format") != FORMAT:
        raise PipelineError(f"{config}: format {desc.get('format')!r} is not {FORMAT!r}")
    try:
        entries = [(str(m["pipeline"]), float(m["weight"])) for m in desc["members"]]
    except (KeyError, TypeError, ValueError) as e:
        raise PipelineError(f"{config}: the members do not fit this voxemo ({type(e).__name__}: {e})") from None
    for name, _ in entries:
        if Path(name).name != name:  # members live beside the description, nowhere else
            raise PipelineError(f"{config}: member {name!r} is not a file name in the fusion's folder")
    members = [load_pipeline(config.parent / name, encoder) for name, _ in entries]
    try:
        fusion = Fusion(members, [w for _, w in entries])
    except PipelineError as e:
        raise PipelineError(f"{config}: {e}") from None
    if fusion.labels != desc.get("labels"):
        raise PipelineError(f"{config}: the description's labels {desc.get('labels')} are not its members' {fusion.labels}")
    return fusion


def load_pipeline_or_fusion(path: str | os.PathLike, encoder: str | os.PathLike | None = None) -> Pipeline | Fusion:
    """What `voxemo evaluate`, `predict` and `serve` take: a fusion's folder, or a pipeline path."""
    return load_fusion(path, encoder) if is_fusion(path) else load_pipeline(path, encoder)
