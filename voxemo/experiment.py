"""Experiments: from corpora and a model name to trained pipelines and honest numbers.

`Experiment` is the full configuration of a run (model, task, filters, protocol, audio, front-end,
training); `cross_validate` runs a protocol fold by fold into a run directory (resumable: finished
folds are kept, the running fold continues from its checkpoint); `train_pipeline` trains one
pipeline with validation speakers held out for early stopping; `score_pipeline` scores a saved
pipeline on any corpus, mapping the emotion names the two share.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from .audio import PAPER_AUDIO, AudioSettings
from .cache import WaveformCache
from .corpora import Manifest, Utterance, parse_data_arg, scan
from .evaluate import classification_metrics, collapse_flags
from .features import FrontendConfig
from .papers import ModelRecipe, model_recipe
from .pipeline import Pipeline, standardise_by_speaker
from .runs import finish_run, plan_folds
from .splits import Fold, filter_utterances, labels_for
from .train import History, TrainConfig, fit

if TYPE_CHECKING:
    from .fusion import Fusion


SPEAKER_NORM_MODELS = ("speaker_norm standardises the pooled statistics of a \"whisper\" front-end (encoder_head, "
                       "encoder_ensemble, encoder_probe); {model} does not take them")


@dataclass
class Experiment:
    """Everything that decides a run; written to config.json."""

    model: str  # a name from voxemo.models.list_models()
    task: str = "emotion"  # "emotion" or "gender"
    protocol: str = "speaker-kfold"  # "speaker-kfold", "loso", "random", "repeated-kfold"
    folds: int | None = None  # k of the k-fold protocols (default 6 speaker folds, 10 repeated)
    repeats: int | None = None  # repeated-kfold repeats (default 5)
    ratios: tuple[float, float, float] | None = None  # random: train/val/test (default 0.8/0.1/0.1)
    val_speakers: int | None = None  # validation speakers drawn from each fold's training speakers
    max_folds: int | None = None  # run only the first this many folds (quick runs)
    seed: int = 0
    channel: str | None = None  # filter: "speech" or "song"
    intensity: str | None = None  # filter: "normal" or "strong"
    emotions: tuple[str, ...] | None = None  # filter: keep only these emotions
    gender: str | None = None  # filter: "female" or "male"
    per_gender: bool = False  # train one model per gender and score each test clip with its gender's model
    route_by: str = "true"  # per_gender: route test clips by their "true" gender or by a gender model's "predicted" one
    audio: AudioSettings | None = None  # how clips are prepared; None: the model's recipe's (the papers' crop)
    frontend: dict = field(default_factory=dict)  # overrides of the model's own front-end
    model_overrides: dict = field(default_factory=dict)  # overrides of the model's hyper-parameters
    train: dict = field(default_factory=dict)  # overrides of the model's training defaults (TrainConfig fields)
    encoder: str | None = None  # a local copy of the pretrained encoder of "whisper" models (default: its pinned packages)
    # encoder models: each speaker's statistics standardised with their own (pipeline.standardise_by_speaker),
    # in training and when scored; such a pipeline scores a speaker's clips together, not one clip
    speaker_norm: bool = False
    # LEAKY, never a default: this many white-noise copies of every clip (at the training config's
    # augment.noise_snr) made BEFORE a random split, so copies of a test clip can be in training.
    # Only the "leaky" row of seed001 uses it, to show what the paper's 93.9 % would need if its
    # copies were made that way (the paper does not say); training then adds no noise of its own.
    leaky_noisy_copies: int = 0
    # LEAKY, never a default: random oversampling BEFORE a speaker-dependent split (each smaller
    # class's clips drawn again, with replacement, until every class has as many as the largest), so
    # a test clip's duplicate may be in training. Only seed004's leaky row uses it: the paper
    # oversamples at random and does not say whether before its 10-fold split; training then draws
    # no class-balanced epochs of its own.
    leaky_oversample: bool = False
    # encoder statistics models: this many degraded copies (augment.degrade: noise, band limit,
    # reverberation; the same copy every time) of every TRAINING clip, embedded once and added to the
    # training set after the split; validation and test clips are never copied
    degraded_copies: int = 0
    # encoder statistics models: this many voice copies (augment.change_speed at augment.VOICE_FACTORS:
    # 0.9, 1.1, ...) of every TRAINING clip, embedded once and added after the split; each copy of a
    # speaker is a new pseudo-speaker (with speaker_norm, standardised with its own statistics)
    voice_copies: int = 0
    # more training speakers: corpora (folders or name:folder) whose clips join every fold's training
    # side and never its validation or test side; a clip whose speaker validates or is tested in the
    # fold stays out of it (RAVDESS song and speech share their actors), and only clips of the run's
    # own classes join (`runs.plan_folds`). Test folds are the run's own corpus's, unchanged.
    extra_train: tuple[str, ...] = ()

    def __post_init__(self):
        self.extra_train = tuple(self.extra_train)
        if self.leaks and (self.protocol not in ("random", "repeated-kfold") or self.is_baseline):
            raise ValueError("leaky_noisy_copies and leaky_oversample copy clips before a speaker-dependent split "
                             "(random or repeated-kfold) for a network: speaker folds keep a clip's copies with "
                             f"their speaker, and the SVM baselines make no copies ({self.model}, {self.protocol})")
        if self.speaker_norm and (self.is_baseline or self.frontend_config().kind != "whisper"):
            raise ValueError(SPEAKER_NORM_MODELS.format(model=self.model))
        from .augment import VOICE_FACTORS

        for name, what in (("degraded_copies", "degraded"), ("voice_copies", "speed-perturbed")):
            if getattr(self, name) and (self.is_baseline or self.frontend_config().kind != "whisper" or self.per_gender):
                raise ValueError(f"{name} adds cached encoder statistics of {what} training clips: it takes "
                                 f"a \"whisper\" front-end model (encoder_head, encoder_ensemble, encoder_probe) "
                                 f"without per_gender, not {self.model}{' with per_gender' if self.per_gender else ''}")
        if not 0 <= self.voice_copies <= len(VOICE_FACTORS):
            raise ValueError(f"voice_copies is {self.voice_copies}: from 0 to {len(VOICE_FACTORS)} "
                             f"(the speeds {', '.join(map(str, VOICE_FACTORS))})")
        if isinstance(self.audio, dict):
            self.audio = AudioSettings(**self.audio)
        if self.audio is None:
            self.audio = default_audio(self.model)
        if self.emotions is not None:
            self.emotions = tuple(self.emotions)
        if self.ratios is not None:
            self.ratios = tuple(self.ratios)

    @property
    def is_baseline(self) -> bool:
        """True for the openSMILE + SVM baselines (voxemo.baseline), which have no network to train."""
        from .baseline import BASELINES

        return self.model in BASELINES

    def recipe(self) -> ModelRecipe:
        """The model's paper settings (voxemo.papers), which `frontend` and `train` override."""
        return model_recipe(self.model)

    def frontend_config(self) -> FrontendConfig:
        base = self.recipe().frontend.to_dict()
        return FrontendConfig.from_dict({**base, **self.frontend})

    def train_config(self) -> TrainConfig:
        """The paper's TrainConfig with `seed` and the overrides; an unknown key is a ConfigError naming it."""
        cfg = TrainConfig.from_dict({**self.recipe().train.to_dict(), "seed": self.seed, **self.train})
        if self.leaky_noisy_copies:  # the copies exist before the split: no noise added in training
            cfg.augment.noisy_copies, cfg.augment.noise_snr = 0, None
        if self.leaky_oversample:  # the corpus is balanced before the split: plain shuffled epochs
            cfg.oversample = False
        return cfg

    @property
    def leaks(self) -> bool:
        """True when clips are copied before the split (`leaky_noisy_copies`, `leaky_oversample`)."""
        return bool(self.leaky_noisy_copies or self.leaky_oversample)

    def leaky_snr(self) -> tuple[float, float]:
        """The SNR range (dB) of `leaky_noisy_copies`: the training config's augment.noise_snr."""
        snr = TrainConfig.from_dict({**self.recipe().train.to_dict(), **self.train}).augment.noise_snr
        if snr is None:
            raise ValueError("leaky_noisy_copies needs train.augment.noise_snr (the SNR range of the copies)")
        return snr

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["frontend_resolved"] = self.frontend_config().to_dict()
        d["train_resolved"] = self.train_config().to_dict()
        return d

    def select(self, manifest: Sequence[Utterance]) -> list[Utterance]:
        return filter_utterances(manifest, channel=self.channel, intensity=self.intensity,
                                 emotions=self.emotions, gender=self.gender)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **overrides) -> "Experiment":
        """From a TOML file (top-level keys; [train], [frontend], [model_overrides], [audio]) and
        overrides that win over it (None ones ignored); voxemo.config.ConfigError names what is wrong."""
        from .config import experiment_from_config

        return experiment_from_config(path, **overrides)


def load_corpora(data: Sequence[str], *, strict: bool = False) -> Manifest:
    """Scan one or more corpora given as folders or `name:folder`; their utterances concatenated."""
    out = Manifest()
    for arg in data:
        name, root = parse_data_arg(arg)
        out = out + scan(root, name, strict=strict)
    return out


def default_audio(model: str) -> AudioSettings:
    """How a model's clips are prepared unless told otherwise: its recipe's settings, else the papers' crop."""
    from .papers import RECIPES

    return RECIPES[model].audio if model in RECIPES else PAPER_AUDIO


def load_clips(utts: Sequence[Utterance], audio: AudioSettings, progress: Callable[[int], None] | None = None,
               cache_dir=None) -> list[np.ndarray]:
    """Each utterance decoded by `audio.decode`, through the waveform cache."""
    return WaveformCache(audio, cache_dir).load_many([u.path for u in utts], progress=progress)


def training_crops(clips: Sequence[np.ndarray], audio: AudioSettings) -> torch.Tensor:
    """The training crop of every decoded clip (`audio.crop`) as one (B, N) tensor."""
    if audio.duration is None:
        raise ValueError("training needs clips of one length: set audio.duration (the papers use 3 s)")
    return torch.from_numpy(np.stack([audio.crop(x) for x in clips]))


def uses_encoder(exp: Experiment) -> bool:
    """Whether the model eats a frozen pretrained encoder's statistics or frames (trained on cached ones)."""
    from .features import ENCODER_KINDS

    return exp.frontend_config().kind in ENCODER_KINDS


def model_inputs(exp: Experiment, utts: Sequence[Utterance], clips: Sequence[np.ndarray],
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """What training batches are made of: the training crops (B, N), or for an encoder model the
    encoder's statistics of each clip's crop (B, L + 1, 2, D) (`embeddings.embed_corpus`) or its frames,
    zero-padded to the longest clip, (B, L + 1, S', D) float16 (`embeddings.embed_frames`), computed
    once per clip and cached."""
    if not uses_encoder(exp):
        return training_crops(clips, exp.audio)
    from .embeddings import embed_corpus, embed_frames
    from .encoders import load_whisper_encoder

    embed = embed_frames if exp.frontend_config().kind == "whisper_frames" else embed_corpus
    stats, skipped = embed(utts, exp.audio, encoder=load_whisper_encoder(exp.encoder), progress=progress)
    if skipped:
        raise ValueError(f"{len(skipped)} clips could not be embedded, e.g. {skipped[0]}")
    stats = torch.from_numpy(stats)
    return standardise_by_speaker(stats, [u.speaker for u in utts]) if exp.speaker_norm else stats


def copy_inputs(exp: Experiment, utts: Sequence[Utterance]) -> torch.Tensor | None:
    """The encoder statistics of each clip's copies, (n, B, L + 1, 2, D): its `exp.degraded_copies`
    degraded copies, then its `exp.voice_copies` voice copies (`embeddings.embed_corpus(copy=k)`,
    `(voice=k)`, cached). With `speaker_norm` each copy is standardised per speaker on its own: a
    speaker's voice copy is standardised with the copy's statistics, as a new speaker would be. None
    without copies. Which of them train is the fold's business (training rows only)."""
    kinds = [{"copy": k} for k in range(1, exp.degraded_copies + 1)]
    kinds += [{"voice": k} for k in range(1, exp.voice_copies + 1)]
    if not kinds:
        return None
    from .embeddings import embed_corpus
    from .encoders import load_whisper_encoder

    encoder = load_whisper_encoder(exp.encoder)
    copies = []
    for kind in kinds:
        stats, skipped = embed_corpus(utts, exp.audio, encoder=encoder, **kind)
        if skipped:
            what = "degraded copies" if "copy" in kind else "voice copies"
            raise ValueError(f"{len(skipped)} {what} could not be embedded, e.g. {skipped[0]}")
        stats = torch.from_numpy(stats)
        copies.append(standardise_by_speaker(stats, [u.speaker for u in utts]) if exp.speaker_norm else stats)
    return torch.stack(copies)


def training_set(waves: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor,
                 copies: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training inputs and labels of `rows`, and those rows' copies (`copy_inputs`) after them."""
    if copies is None:
        return waves[rows], labels[rows]
    n = copies.shape[0]
    return torch.cat([waves[rows], copies[:, rows].flatten(0, 1)]), labels[rows].repeat(1 + n)


def build(exp: Experiment, classes: list[str]) -> Pipeline:
    """A fresh pipeline for the experiment, initialised from its seed."""
    from .models import create_model
    from .features import Frontend

    per_window = exp.recipe().per_window
    fcfg = exp.frontend_config()
    encoder = None
    if uses_encoder(exp):
        from .encoders import load_whisper_encoder

        encoder = load_whisper_encoder(exp.encoder)
        input_shape = Frontend(fcfg, exp.audio.sample_rate, encoder).features.output_shape
    else:
        probe = Frontend(fcfg, exp.audio.sample_rate)(torch.zeros(1, exp.audio.crop_samples))
        input_shape = tuple(probe.shape[2:] if per_window else probe.shape[1:])
    torch.manual_seed(exp.seed)
    model = create_model(exp.model, n_classes=len(classes), input_shape=input_shape, **exp.model_overrides)
    if getattr(model, "blocks", None):  # fine-tuned copies of the encoder's top blocks start from its weights
        model.load_encoder_blocks(encoder)
    return Pipeline(fcfg, model, classes, audio=exp.audio, per_window=per_window, task=exp.task, encoder=encoder,
                    meta={"speaker_norm": True} if exp.speaker_norm else None)


def train_fold(exp: Experiment, clips: Sequence[np.ndarray], waves: torch.Tensor, labels: torch.Tensor,
               classes: list[str], fold: Fold, *, speakers: np.ndarray | None = None,
               copies: torch.Tensor | None = None, checkpoint_dir=None,
               resume=False, on_epoch=None) -> tuple[Pipeline, History, dict]:
    """Train on the training crops (`waves`) of fold.train, and their `copies` (`copy_inputs`) if any,
    early stopping on fold.val's; score fold.test's decoded `clips` as `voxemo predict` hears them:
    (pipeline, history, metrics). `speakers` (every clip's) is what a `speaker_norm` experiment's
    test clips are grouped by."""
    pipe = build(exp, classes)
    tr, va, te = (torch.as_tensor(i, dtype=torch.long) for i in (fold.train, fold.val, fold.test))
    val = (waves[va], labels[va]) if len(va) else None
    history = fit(pipe, training_set(waves, labels, tr, copies), val, exp.train_config(), checkpoint_dir=checkpoint_dir,
                  resume=resume, on_epoch=on_epoch, precomputed=uses_encoder(exp))
    probs = pipe.hear([clips[i] for i in fold.test], _of(speakers, fold.test))
    m = classification_metrics(labels[te].numpy(), probs.argmax(1), list(range(len(classes))))
    m["classes"] = classes
    m.update(fold=fold.name, best_epoch=history.best_epoch, epochs_run=len(history.epochs),
             n_train=len(tr), n_val=len(va), n_test=len(te),
             flags=collapse_flags(m["confusion"], [e["train_loss"] for e in history.epochs]))
    return pipe, history, m


def _of(speakers: np.ndarray | None, rows) -> list[str] | None:
    return None if speakers is None else [str(s) for s in speakers[rows]]


@dataclass
class FoldInputs:
    """What every fold of a cross-validation run reads: shipped once to an executor (Ray's object
    store), so a fold runs on any machine without the corpus on its disk."""

    exp: Experiment
    clips: list  # decoded clips (np.ndarray each), as `voxemo predict` hears them at test time
    waves: torch.Tensor  # training inputs: crops (B, N), an encoder's statistics (B, L + 1, 2, D) or frames (B, L + 1, S', D)
    labels: torch.Tensor  # (B,) class indices
    classes: list[str]
    genders: np.ndarray  # (B,) per_gender routing
    speakers: np.ndarray | None = None  # (B,) who speaks each clip (speaker_norm groups test clips by it)
    copies: torch.Tensor | None = None  # (n, B, ...) copies' statistics (copy_inputs), training rows only


def run_fold(inputs: FoldInputs, fold: Fold, *, exp: Experiment | None = None, checkpoint_dir=None,
             resume: bool = False, on_epoch=None) -> dict:
    """One fold from start to finish, with everything it needs in its arguments: {"metrics",
    "history", "seconds" (every sitting's), "resumed_seconds" (earlier sittings'), "weights"} (the fold's pipeline state as numpy arrays, per gender model
    prefixed "female." / "male." / "gender."). Writes nothing but the training checkpoint, and that
    only with `checkpoint_dir` (an executor on another machine passes None). `exp` overrides
    inputs.exp (a sweep's chosen settings)."""
    exp = exp or inputs.exp
    t0 = time.perf_counter()
    resumed = 0.0  # seconds this fold trained in earlier sittings (per-gender folds: not counted)
    if exp.per_gender:
        m, h, pipes = _per_gender_fold(exp, inputs.clips, inputs.waves, inputs.labels, inputs.classes, fold,
                                       inputs.genders, checkpoint_dir, resume, on_epoch, inputs.speakers)
    else:
        pipe, history, m = train_fold(exp, inputs.clips, inputs.waves, inputs.labels, inputs.classes, fold,
                                      speakers=inputs.speakers, copies=inputs.copies, checkpoint_dir=checkpoint_dir,
                                      resume=resume, on_epoch=on_epoch)
        h, pipes, resumed = history.curves(), {"": pipe}, history.resumed_seconds
    weights = {f"{g}.{k}" if g else k: v.detach().cpu().numpy() for g, p in pipes.items() for k, v in p.state_dict().items()}
    return {"metrics": m, "history": h, "seconds": round(time.perf_counter() - t0 + resumed, 1),
            "resumed_seconds": resumed, "weights": weights}


def cross_validate(manifest: Sequence[Utterance], exp: Experiment, run_dir: Path, *, resume: bool = False,
                   on_fold: Callable[[int, int, dict], None] | None = None,
                   on_epoch: Callable[[dict], None] | None = None,
                   decode_progress: Callable[[int], None] | None = None, executor=None) -> dict:
    """Run `exp.protocol` over the selected utterances; write the run directory; return metrics.json's dict.

    on_fold(i, n, m) after each fold: m is the fold's metrics with "seconds" (its wall time over every
    sitting) and, for a fold kept from an earlier sitting (`resume`), "resumed": True.

    executor: where the folds run (`executors.LocalExecutor`, the default, or `RayExecutor`: each
    fold a task). Only this function writes the run directory; a remote fold returns its weights,
    written to foldNN/weights.safetensors. `resume` keeps finished folds either way; a local fold
    also continues from its last epoch, a remote one starts again.
    """
    if exp.is_baseline:
        from .baseline import cross_validate_baseline

        return cross_validate_baseline(manifest, exp, run_dir, on_fold=on_fold, decode_progress=decode_progress)
    from .executors import LocalExecutor

    executor = executor or LocalExecutor()
    plan = plan_folds(manifest, exp)
    clips = load_clips(plan.utts, exp.audio, decode_progress)
    if exp.leaks:
        plan, clips = leaky_copies_before_split(plan, clips, exp)
    utts, y, classes, folds = plan.utts, plan.y, plan.classes, plan.folds
    waves = model_inputs(exp, utts, clips)
    labels = torch.as_tensor(y, dtype=torch.long)
    genders = np.array([u.gender for u in utts])
    run_dir = Path(run_dir)
    record_settings(run_dir, exp, resume)
    fold_metrics, histories = [None] * len(folds), [None] * len(folds)
    t0 = time.perf_counter()
    earlier = 0.0  # seconds the folds taken from an interrupted run took then
    fold_dirs = [run_dir / f"fold{i + 1:02d}" for i in range(len(folds))]
    todo = []
    for i, fold_dir in enumerate(fold_dirs):
        if resume and (fold_dir / "metrics.json").is_file():
            saved = json.loads((fold_dir / "metrics.json").read_text())
            fold_metrics[i], histories[i] = saved["metrics"], saved["history"]
            earlier += saved.get("seconds", 0.0)
            if on_fold:
                on_fold(i, len(folds), {**fold_metrics[i], "seconds": saved.get("seconds"), "resumed": True})
        else:
            todo.append(i)
    if resume and (run_dir / "metrics.json").is_file():  # a sitting that finished: its time outside the folds too
        earlier = max(earlier, json.loads((run_dir / "metrics.json").read_text()).get("seconds", 0.0))
    local = not executor.remote
    jobs = [{"fold": folds[i], "checkpoint_dir": fold_dirs[i] if local else None, "resume": resume,
             "on_epoch": on_epoch if local else None} for i in todo]
    inputs = FoldInputs(exp, clips, waves, labels, classes, genders, np.array([u.speaker for u in utts]),
                        copy_inputs(exp, utts))
    for k, r in executor.map(run_fold, inputs, jobs):
        i = todo[k]
        fold_dirs[i].mkdir(parents=True, exist_ok=True)
        if not local:
            from safetensors.numpy import save_file

            save_file(r["weights"], str(fold_dirs[i] / "weights.safetensors"))
        fold_metrics[i], histories[i] = r["metrics"], r["history"]
        earlier += r["resumed_seconds"]
        (fold_dirs[i] / "metrics.json").write_text(json.dumps({k_: r[k_] for k_ in ("metrics", "history", "seconds")}))
        if on_fold:
            on_fold(i, len(folds), {**r["metrics"], "seconds": r["seconds"]})
    return finish_run(run_dir, exp, exp.to_dict(), plan, fold_metrics, histories, t0 - earlier)


# config.json keys a resumed run may change: how many folds run (the folds themselves do not change),
# and the overrides whose effect the *_resolved keys already compare
RESUMABLE_CHANGES = frozenset({"max_folds", "frontend", "train"})


def record_settings(run_dir: Path, exp: Experiment, resume: bool) -> None:
    """Write the run's settings to run_dir/config.json. A run resumed there must have the settings
    recorded (`changed_settings`), so no run mixes folds or epochs made under two settings."""
    path, settings = Path(run_dir) / "config.json", json.dumps(exp.to_dict(), indent=2)
    if resume and path.is_file():
        if changed := changed_settings(json.loads(path.read_text()), json.loads(settings)):
            raise ValueError(f"{run_dir} was run with other settings ({'; '.join(changed)}): it cannot be resumed "
                             "under these. Resume it with the settings it ran with, or choose another output")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings)


def changed_settings(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """What differs between a run's saved config.json and the settings resuming it, as "key: old -> now".
    A key only one side has (a setting added in a later version) is no change; nor is a RESUMABLE_CHANGES."""
    out = []
    for key in saved.keys() & now.keys():
        name = prefix + key
        if not prefix and key in RESUMABLE_CHANGES:
            continue
        if isinstance(saved[key], dict) and isinstance(now[key], dict):
            out += changed_settings(saved[key], now[key], name + ".")
        elif saved[key] != now[key]:
            out.append(f"{name}: {saved[key]!r} -> {now[key]!r}")
    return sorted(out)


def leaky_copies_before_split(plan, clips: Sequence[np.ndarray], exp: Experiment):
    """LEAKY on purpose (one recipe row each): copies of decoded clips added to the corpus BEFORE the
    speaker-dependent split, which is then drawn over clips and copies alike, so a test clip's copies
    may train the model and test folds hold copies too. Two readings of papers that do not say when
    they copied:
    - `exp.leaky_noisy_copies` (seed001): that many white-noise copies of every clip, at an SNR drawn
      from `exp.leaky_snr()`;
    - `exp.leaky_oversample` (seed004): random oversampling, each smaller class's clips drawn again
      (with replacement) until every class has as many as the largest: exact duplicates.
    Returns the plan and the clips with the copies appended (copy k of original i: utterance i again)."""
    from .augment import add_noise
    from .runs import FoldPlan
    from .splits import make_folds

    gen = torch.Generator().manual_seed(exp.seed)
    originals: list[int] = []  # the clip each copy copies
    copies: list[np.ndarray] = []
    for _ in range(exp.leaky_noisy_copies):
        originals += range(len(clips))
        copies += [add_noise(torch.from_numpy(x)[None], exp.leaky_snr(), gen)[0].numpy() for x in clips]
    if exp.leaky_oversample:
        counts = np.bincount(plan.y)
        for c, count in enumerate(counts):
            members = np.flatnonzero(plan.y == c)
            drawn = members[torch.randint(len(members), (counts.max() - count,), generator=gen).numpy()]
            originals += drawn.tolist()
            copies += [clips[i] for i in drawn]
    utts = [*plan.utts, *(plan.utts[i] for i in originals)]
    y = np.concatenate([plan.y, plan.y[originals]])
    folds = make_folds(exp.protocol, utts, y, folds=exp.folds, seed=exp.seed, ratios=exp.ratios,
                       repeats=exp.repeats, val_speakers=exp.val_speakers)
    folds = folds[: exp.max_folds] if exp.max_folds else folds
    return FoldPlan(utts, y, plan.classes, folds, plan.folds_total), [*clips, *copies]


def _per_gender_fold(exp, clips, waves, labels, classes, fold, genders, fold_dir, resume, on_epoch, speakers=None):
    """One model per gender on that gender's clips; each test clip is scored by the model of its
    true gender, or (route_by="predicted", seed 002_0b61's three-model pipeline) of the gender a
    gender model trained on the same fold predicts for it. (metrics, curves, {name: pipeline})."""
    def sub(name):  # the checkpoint folder of one of the fold's models (none when fold_dir is None)
        return Path(fold_dir) / name if fold_dir is not None else None

    test = torch.as_tensor(fold.test)
    pipes = {}
    routed = genders[fold.test]
    extra = {}
    if exp.route_by == "predicted":
        gexp = dataclasses.replace(exp, task="gender", per_gender=False)
        is_male = torch.as_tensor((genders == "male").astype(np.int64))
        gpipe, _, _ = train_fold(gexp, clips, waves, is_male, ["female", "male"], fold, speakers=speakers,
                                 checkpoint_dir=sub("gender"), resume=resume, on_epoch=on_epoch)
        pipes["gender"] = gpipe
        gprobs = gpipe.hear([clips[i] for i in fold.test], _of(speakers, fold.test))
        routed = np.where(gprobs.argmax(1) == 1, "male", "female")
        extra["routing_accuracy"] = float((routed == genders[fold.test]).mean())
    elif exp.route_by != "true":
        raise ValueError(f"route_by must be 'true' or 'predicted', not {exp.route_by!r}")
    preds = np.empty(len(fold.test), dtype=np.int64)
    curves = {}
    for g in ("female", "male"):
        part = Fold(f"{fold.name} [{g}]", fold.protocol, fold.speaker_independent,
                    fold.train[genders[fold.train] == g], fold.val[genders[fold.val] == g],
                    fold.test[genders[fold.test] == g])
        if not (routed == g).any():
            continue
        pipe, history, _ = train_fold(exp, clips, waves, labels, classes, part, speakers=speakers,
                                      checkpoint_dir=sub(g), resume=resume, on_epoch=on_epoch)
        pipes[g] = pipe
        probs = pipe.hear([clips[i] for i in fold.test[routed == g]], _of(speakers, fold.test[routed == g]))
        preds[routed == g] = probs.argmax(1)
        curves[g] = history.curves()
    m = classification_metrics(labels[test].numpy(), preds, list(range(len(classes))))
    flags = collapse_flags(m["confusion"])
    flags += [f"{g}: loss at chance" for g, c in curves.items()  # each gender's model, on its own training loss
              if "loss at chance" in collapse_flags(m["confusion"], c["train_loss"])]
    m.update(classes=classes, fold=fold.name, n_test=len(fold.test), flags=flags, **extra)
    h = curves.get("female") or curves.get("male") or {}
    return m, h, pipes


def train_pipeline(manifest: Sequence[Utterance], exp: Experiment, *, on_epoch=None, decode_progress=None,
                   checkpoint_dir=None, resume=False) -> tuple[Pipeline, History, dict]:
    """Train one pipeline on all selected speakers but a few held out for early stopping.

    The held-out speakers (exp.val_speakers, default 2, gender-balanced) are the pipeline's
    validation set; its metrics on them are saved in the pipeline (speaker-independent). With
    val_speakers = 0 every speaker trains, every epoch runs, and there are no metrics (None).
    """
    from .splits import holdout_speakers

    if exp.extra_train:
        raise ValueError("extra_train adds training speakers to cross-validation folds; `voxemo train` trains on "
                         f"every corpus it is given: pass {', '.join(exp.extra_train)} as more DATA arguments")
    if checkpoint_dir is not None:
        record_settings(Path(checkpoint_dir), exp, resume)
    utts = exp.select(manifest)
    y, classes = labels_for(utts, exp.task)
    fold = holdout_speakers(utts, n=2 if exp.val_speakers is None else exp.val_speakers, seed=exp.seed)
    clips = load_clips(utts, exp.audio, decode_progress)
    waves = model_inputs(exp, utts, clips)
    labels = torch.as_tensor(y, dtype=torch.long)
    pipe = build(exp, classes)
    tr, va = torch.as_tensor(fold.train, dtype=torch.long), torch.as_tensor(fold.val, dtype=torch.long)
    history = fit(pipe, training_set(waves, labels, tr, copy_inputs(exp, utts)), (waves[va], labels[va]) if len(va) else None,
                  exp.train_config(), on_epoch=on_epoch,
                  checkpoint_dir=checkpoint_dir, resume=resume, precomputed=uses_encoder(exp))
    m = None
    if len(va):
        probs = pipe.hear([clips[i] for i in fold.val], [utts[i].speaker for i in fold.val])
        m = classification_metrics(labels[va].numpy(), probs.argmax(1), list(range(len(classes))))
    pipe.meta.update(
        corpora=sorted({u.corpus for u in utts}),
        n_train=len(tr),
        protocol="speaker-holdout",
        validation_speakers=sorted({utts[i].speaker for i in fold.val}),
        validation_metrics=m and {"ua": m["ua"], "wa": m["wa"], "macro_f1": m["macro_f1"], "classes": classes},
        experiment=exp.to_dict(),
    )
    return pipe, history, m


@dataclass(frozen=True)
class CorpusView:
    """How a pipeline (or fusion) scores a labelled corpus: `known`, the clips whose label it has;
    `heard`, what it hears (a `speaker_norm` pipeline every clip, so each speaker is standardised over
    all their clips, the labels unused; else `known`); `rows`, the known clips' places in `heard`;
    `shared`, the labels the corpus has, in the pipeline's order, and `cols` their columns: predictions
    are restricted to them; `y`, the known clips' labels as indices into `shared`."""

    known: list[Utterance]
    unmapped: list[str]
    heard: list[Utterance]
    rows: list[int]
    shared: list[str]
    cols: list[int]
    y: np.ndarray

    @classmethod
    def of(cls, pipe, manifest: Sequence[Utterance]) -> "CorpusView":
        """ValueError when none of the corpus's labels is the pipeline's."""
        attr, labels = pipe.task, pipe.labels
        known = [u for u in manifest if getattr(u, attr) in labels]
        unmapped = sorted({getattr(u, attr) for u in manifest} - set(labels))
        if not known:
            raise ValueError(f"none of the corpus's labels ({', '.join(unmapped)}) is among the pipeline's ({', '.join(labels)})")
        heard = list(manifest) if pipe.speaker_norm else known
        shared = [c for c in labels if any(getattr(u, attr) == c for u in known)]
        return cls(known, unmapped, heard, [i for i, u in enumerate(heard) if getattr(u, attr) in labels], shared,
                   [labels.index(c) for c in shared], np.array([shared.index(getattr(u, attr)) for u in known]))


def score_pipeline(pipe: Pipeline | Fusion, manifest: Sequence[Utterance], *, decode_progress=None,
                   per_clip: bool = False) -> dict:
    """Score a pipeline (or a `fusion.Fusion`) on a corpus, also another corpus than it was trained on.

    Each clip is heard as `voxemo predict` hears it (`pipe.audio.prepare`: the same decoding,
    trimming, crop and windows). Clips whose label the pipeline does not know are left out and
    reported under "unmapped"; predictions are restricted to the labels the corpus has, so a
    7-class model scored on a corpus sharing 5 of its classes chooses among those 5. With
    `per_clip`, "clips" lists every scored clip's path, label and probabilities over all the
    pipeline's labels (what `voxemo predict` prints for that file). A `speaker_norm` pipeline hears
    every clip of the corpus, so each speaker is standardised over all their clips, the labels unused
    (those it cannot score too), as it would be on a speaker's unlabelled recordings.
    """
    v = CorpusView.of(pipe, manifest)
    probs = pipe.hear(load_clips(v.heard, pipe.audio, decode_progress), [u.speaker for u in v.heard])[v.rows]
    m = classification_metrics(v.y, probs[:, v.cols].argmax(1), v.shared)  # per_class named by class, not by index
    m.update(classes=v.shared, unmapped=v.unmapped, n_unmapped=len(manifest) - len(v.known), n=len(v.known),
             protocol="held-out corpus" if not set(pipe.meta.get("corpora", [])) & {u.corpus for u in v.known}
             else "same corpus (speakers may overlap training)")
    if per_clip:
        m["clips"] = [{"path": u.path, "label": pipe.labels[int(np.argmax(p))],
                       "probabilities": dict(zip(pipe.labels, map(float, p)))} for u, p in zip(v.known, probs)]
    return m


def fusion_weights_on(members: Sequence[Pipeline], manifest: Sequence[Utterance]) -> tuple[list[float], float, int]:
    """Two pipelines' fusion weights chosen on a labelled corpus (`fusion.choose_weights`): (weights, the
    fusion's UA on those clips, clips scored). The clips are heard and the predictions restricted as
    `score_pipeline` does (`CorpusView`). Give it held-out speakers (validation), never the clips the
    fusion will be tested on."""
    from .fusion import Fusion, choose_weights

    pair = Fusion(members)  # checks that the members fit together
    v = CorpusView.of(pair, manifest)
    clips = load_clips(v.heard, pair.audio)
    probs = [m.hear(clips, [u.speaker for u in v.heard] if m.speaker_norm else None)[v.rows][:, v.cols]
             for m in members]
    weights, ua = choose_weights(probs, v.y)
    return weights, ua, len(v.known)
