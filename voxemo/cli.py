"""The `voxemo` command: thin commands, each parsing flags and calling one library function."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .audio import SAMPLE_RATE
from .config import TABLES

app = typer.Typer(
    help="voxemo: recognise emotion in speech and song.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show "[default: ...]" literally
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Inspect corpora: files, speakers, labels, durations, problems.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Markup off: user text (paths, labels, values, hints like 'voxemo[serve]') prints verbatim, square
# brackets and all; the few styled words go through `styled`.
console = Console(markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

CorpusOpt = Annotated[
    Optional[str],
    typer.Option("--corpus", "-c", help="Corpus layout: ravdess, emodb, tess, savee, cremad or folder. Default: detected from the folder."),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on the first file whose name does not fit the corpus, instead of reporting it.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]


def styled(word: str, style: str, rest: str = "") -> Text:
    """`word` in `style`, then `rest` verbatim (no markup is read in either)."""
    return Text.assemble((word, style), rest)


def fail(message: str, code: int = 2):
    err.print(styled("error:", "bold red", f" {message}"), highlight=False)
    raise typer.Exit(code)


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")


def scan_data(path: str, corpus: str | None, strict: bool):
    """Scan a corpus folder (or `name:path`) with clear errors instead of tracebacks."""
    from .corpora import CorpusError, parse_data_arg, scan

    name, root = parse_data_arg(path)
    try:
        return scan(root, corpus or name, strict=strict)
    except CorpusError as e:
        fail(str(e))


@contextmanager
def progress_bar():
    """Progress bars on stderr; they stay on screen when the command finishes, and are cleared when
    it ends in an error (the one-line error is what is left, not "training 0/?")."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=False)
    bar.start()
    try:
        yield bar
    except BaseException as e:
        if not (isinstance(e, typer.Exit) and e.exit_code == 0):
            bar.live.transient = True
        raise
    finally:
        bar.stop()


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="Corpus folder, or NAME:FOLDER (e.g. emodb:/data/emodb).")],
    corpus: CorpusOpt = None,
    strict: StrictOpt = False,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", "-m", help="Also write the manifest (one row per file) as CSV here.")] = None,
    force: ForceOpt = False,
):
    """Print files, speakers, per-emotion and per-gender counts, durations and problems of a corpus."""
    from .corpora import write_manifest
    from .data import summarize

    m = scan_data(path, corpus, strict)
    s = summarize(m)
    console.print(styled(path, "bold", f": {s['files']} files, corpus {', '.join(s['corpora'])}, "
                                       f"channel {', '.join(f'{k} {v}' for k, v in s['channels'].items())}"), highlight=False)
    by_gender = ", ".join(f"{v} {k}" for k, v in sorted(s["speakers_by_gender"].items()))
    console.print(f"speakers: {s['speakers']} ({by_gender})", highlight=False)
    for title, counts in (("emotion", s["emotions"]), ("gender", s["genders"])):
        t = Table(title=None, show_edge=False)
        t.add_column(title)
        t.add_column("files", justify="right")
        t.add_column("share", justify="right")
        for k, v in counts.items():
            t.add_row(k, str(v), f"{v / s['files']:.1%}")
        console.print(t)
    d = s["duration"]
    if d:
        console.print(f"duration (s): total {d['total']:.1f}, min {d['min']:.2f}, mean {d['mean']:.2f}, "
                      f"median {d['median']:.2f}, max {d['max']:.2f}", highlight=False)
    if s["problems"]:
        console.print(styled(f"{len(s['problems'])} files skipped:", "yellow"))
        for p in s["problems"]:
            console.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("problems: none")
    if manifest is not None:
        refuse_overwrite(manifest, force)
        write_manifest(m, manifest)
        console.print(f"manifest written to {manifest}")


@app.command("features")
def features(
    path: Annotated[str, typer.Argument(help="Corpus folder, or NAME:FOLDER; with a .parquet --out, any folder of audio files or a .txt list of paths.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="logmel, mfcc, stft, mean_mfcc, mfcc_time_mean, egemaps, compare, or whisper (Whisper base's per-layer mean and std, cached per clip); egemaps and compare not with a .parquet --out.")] = "logmel",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file (features, lengths, path, emotion, speaker, gender), or a folder ending in .parquet: Parquet parts written as results come, a rerun skipping the files already in them (for large file lists).")] = Path("features.npz"),
    corpus: CorpusOpt = None,
    strict: StrictOpt = False,
    sample_rate: Annotated[int, typer.Option("--sr", help="Sample rate the audio is resampled to (Hz).")] = SAMPLE_RATE,
    offset: Annotated[Optional[float], typer.Option(help="Seconds skipped at the start of each clip.  [default: 0.5, the papers'; 0 for whisper]")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Seconds kept per clip, zero-padded when shorter; 0 keeps whole clips.  [default: 3, the papers'; whole clips for whisper]")] = None,
    n_mels: Annotated[int, typer.Option(help="Mel bands (logmel, mfcc).")] = 128,
    n_mfcc: Annotated[int, typer.Option(help="Cepstral coefficients (mfcc, mean_mfcc, mfcc_time_mean).")] = 40,
    cache: Annotated[bool, typer.Option(help="Use the decoded-waveform cache ($VOXEMO_CACHE_DIR or the user cache folder).")] = True,
    executor: Annotated[str, typer.Option("--executor", help="With a .parquet --out: local (this process) or ray (a pool of Ray Data workers, each loading the front-end or encoder once; needs voxemo[ray]).")] = "local",
    ray_address: RayAddressOpt = None, cpus_per_task: TaskCpusOpt = 1,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="--executor ray: workers in the pool.  [default: the cluster's CPUs / --cpus-per-task]")] = None,
    force: ForceOpt = False,
):
    """Extract features for a corpus into one .npz file, or for any list of files into Parquet parts, with a progress bar."""
    import tempfile

    from .audio import AudioError
    from .audio import AudioSettings
    from .data import extract_features
    from .features import KINDS, SMILE_SETS, FrontendConfig

    whole = kind == "whisper"  # the encoder models hear whole clips
    settings = AudioSettings(sample_rate, (0.0 if whole else 0.5) if offset is None else offset,
                             (None if whole else 3.0) if duration is None else duration or None)
    if out.suffix == ".parquet" or executor != "local":
        features_to_parquet(path, kind, out, settings, {"n_mels": n_mels, "n_mfcc": n_mfcc}, executor, ray_address,
                            cpus_per_task, workers)
        return
    if kind not in KINDS + SMILE_SETS:
        fail(f"--kind must be one of {', '.join(KINDS + SMILE_SETS)}, not {kind!r}")
    if out.suffix != ".npz":
        fail(f"--out must end in .npz (or .parquet, a folder of parts), not {out.name!r}")
    refuse_overwrite(out, force)
    m = scan_data(path, corpus, strict)
    cfg = None if kind in SMILE_SETS + ("whisper",) else FrontendConfig.for_kind(kind, n_mels=n_mels, n_mfcc=n_mfcc)
    with progress_bar() as bar, tempfile.TemporaryDirectory() as tmp:
        task = bar.add_task(f"{kind} features", total=2 * len(m))
        try:
            fs = extract_features(m, kind, settings=settings, frontend=cfg, cache_dir=None if cache else tmp,
                                  progress=lambda n: bar.advance(task, n))
        except AudioError as e:
            fail(str(e))
        bar.update(task, completed=2 * len(m))
    fs.save(out)
    console.print(f"{len(fs.utterances)} clips -> {out} {tuple(fs.features.shape)}", highlight=False)
    for s in fs.skipped:
        err.print(styled("skipped", "yellow", f" {s}"), highlight=False)


def features_to_parquet(path: str, kind: str, out: Path, audio, sizes: dict, executor: str, ray_address, cpus: int,
                        workers) -> None:
    """`voxemo features ... --out DIR.parquet`: features of every file not yet in DIR (bulk.feature_files)."""
    from .audio import AudioError
    from .bulk import feature_files
    from .encoders import EncoderError
    from .features import KINDS, FrontendConfig

    if kind not in KINDS:
        fail(f"--kind must be one of {', '.join(KINDS)} with a .parquet --out, not {kind!r}")
    if out.suffix != ".parquet":
        fail(f"--executor {executor} writes Parquet parts: --out must be a folder ending in .parquet, not {out.name!r}")
    if kind != "whisper" and audio.duration is None:
        fail(f"{kind} features of whole clips differ in length from file to file: give --duration")
    files = expand_inputs([Path(path)])
    if not files:
        fail(f"no audio files in {path}")
    frontend = None if kind == "whisper" else FrontendConfig.for_kind(kind, **sizes).to_dict()
    if kind == "whisper":
        from .encoders import load_whisper_encoder

        try:
            load_whisper_encoder()  # a missing encoder: one line here, not in every worker
        except EncoderError as e:
            fail(str(e))
    runner = open_executor(executor, ray_address, cpus)
    with progress_bar() as bar:
        task = bar.add_task(f"{kind} features", total=len(files))
        try:
            c = feature_files(files, out, kind=kind, audio=audio, frontend=frontend, executor=runner, workers=workers,
                              progress=lambda n: bar.advance(task, n))
        except (AudioError, EncoderError) as e:
            fail(str(e))
    console.print(f"{c['written']} files -> {out} ({c['parts']} parts; {c['done_before']} were there already; "
                  f"{c['failed']} could not be used)", highlight=False, soft_wrap=True)


# --- training and evaluation -----------------------------------------------------------------------

DataArgs = Annotated[list[str], typer.Argument(help="Corpus folders or NAME:FOLDER (e.g. emodb:/data/emodb); several are pooled.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name (see `voxemo models`).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help=f"TOML file: top-level experiment keys (model, protocol, ...) and the tables {', '.join(f'[{t}]' for t in TABLES)}. Flags override it.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="emotion or gender.  [default: emotion]")]
ChannelOpt = Annotated[Optional[str], typer.Option("--channel", help="Keep only speech or song clips.")]
IntensityOpt = Annotated[Optional[str], typer.Option("--intensity", help="Keep only normal or strong clips (RAVDESS).")]
EmotionsOpt = Annotated[Optional[str], typer.Option("--emotions", help="Keep only these emotions, comma-separated (e.g. neutral,calm,happy,sad,angry,fearful).")]
GenderOpt = Annotated[Optional[str], typer.Option("--gender", help="Keep only female or male speakers.")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="At most this many epochs.  [default: the model's]")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Learning rate.  [default: the model's]")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Clips per step.  [default: the model's]")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed for folds, initialisation, order and augmentation.  [default: 0]")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last finished epoch (and fold).")]
CopiesOpt = Annotated[Optional[int], typer.Option("--degraded-copies", min=0, help="Encoder statistics models: this many degraded copies (noise, band limit, reverberation) of every training clip, embedded once, added to training after the split.  [default: 0]")]
VoiceCopiesOpt = Annotated[Optional[int], typer.Option("--voice-copies", min=0, max=6, help="Encoder statistics models: this many speed-perturbed copies of every training clip (speeds 0.9, 1.1, 0.85, 1.15, 0.95, 1.05: other voices), each copy of a speaker a new speaker, embedded once, added to training after the split.  [default: 0]")]
SpeakerNormOpt = Annotated[Optional[bool], typer.Option("--speaker-norm/--no-speaker-norm", help="Encoder models: standardise each speaker's statistics with their own, in training and when scored (the pipeline then scores a speaker's clips together: `voxemo evaluate`, not `predict`).  [default: off]")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="local (in this process, one piece after another) or ray (each fold, row or trial a Ray task; a local Ray instance, or the cluster RAY_ADDRESS or --ray-address names; needs voxemo[ray]).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="--executor ray: the cluster's head (host:port, or auto).  [default: $RAY_ADDRESS, else a local instance]")]
TaskCpusOpt = Annotated[int, typer.Option("--cpus-per-task", min=1, help="--executor ray: CPUs (torch threads) each fold, row or worker asks for.")]


def open_executor(name: str, address: str | None = None, cpus: int = 1):
    """The executor a command runs its pieces on, with a one-line error when Ray is missing or does not answer."""
    from .executors import EXECUTORS, ExecutorError, make_executor

    if name not in EXECUTORS:
        fail(f"--executor must be one of {', '.join(EXECUTORS)}, not {name!r}")
    try:
        return make_executor(name, address=address, cpus=cpus)
    except ExecutorError as e:
        fail(str(e))


def build_experiment(config: Path | None, **flags):
    """Experiment.from_config with its ConfigError as a one-line error."""
    from .config import ConfigError
    from .experiment import Experiment

    try:
        return Experiment.from_config(config, **flags)
    except ConfigError as e:
        fail(str(e))


def load_data(data: list[str], strict: bool = False):
    from .corpora import CorpusError
    from .experiment import load_corpora

    try:
        return load_corpora(data, strict=strict)
    except CorpusError as e:
        fail(str(e))


def epoch_printer(bar, task):
    def on_epoch(r):
        val = f" val UA {r['val_ua']:.3f} WA {r['val_acc']:.3f}" if "val_ua" in r else ""
        bar.update(task, advance=1, description=f"epoch {r['epoch'] + 1}: loss {r['train_loss']:.3f} acc {r['train_acc']:.3f}{val}")
    return on_epoch


@app.command("models")
def models_cmd():
    """List the registered models with the features they take and the paper settings they train with."""
    from .models import list_models
    from .papers import model_recipe

    t = Table(show_edge=False)
    for c in ("model", "features", "per window", "training"):
        t.add_column(c)
    for name in list_models():
        e = model_recipe(name)
        f = e.frontend
        feats = f"{f.kind}" + (f" x{f.chunks} chunks" if f.chunks else "") + (f" windows {f.window_frames}" if f.window_frames else "")
        t.add_row(name, feats, "yes" if e.per_window else "", ", ".join(f"{k}={v}" for k, v in e.train_settings().items()))
    from .baseline import BASELINES

    for name, feature_set in BASELINES.items():  # `voxemo cv --model` takes these too
        t.add_row(name, f"{feature_set} functionals", "", "linear SVM (voxemo cv only)")
    console.print(t)


@app.command("train")
def train_cmd(
    data: DataArgs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Pipeline path: writes OUT.safetensors and OUT.json.")],
    model: ModelOpt = None, config: ConfigOpt = None, task: TaskOpt = None, channel: ChannelOpt = None,
    intensity: IntensityOpt = None, emotions: EmotionsOpt = None, gender: GenderOpt = None,
    epochs: EpochsOpt = None, lr: LrOpt = None, batch_size: BatchOpt = None, seed: SeedOpt = None,
    val_speakers: Annotated[Optional[int], typer.Option("--val-speakers", help="Speakers held out for early stopping; 0: none (all epochs run, the last kept).  [default: 2]")] = None,
    resume: ResumeOpt = False, force: ForceOpt = False, encoder: EncoderOpt = None, speaker_norm: SpeakerNormOpt = None,
    degraded_copies: CopiesOpt = None, voice_copies: VoiceCopiesOpt = None,
):
    """Train one pipeline on the given corpora, a few speakers held out for early stopping."""
    from .experiment import train_pipeline
    from .pipeline import pipeline_files

    exp = build_experiment(config, model=model, task=task, channel=channel, intensity=intensity, emotions=emotions,
                           gender=gender, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, val_speakers=val_speakers,
                           encoder=str(encoder) if encoder else None, speaker_norm=speaker_norm,
                           degraded_copies=degraded_copies, voice_copies=voice_copies)
    if exp.is_baseline:
        fail(f"{exp.model} is a cross-validation baseline with no pipeline to save; run it with `voxemo cv`")
    for p in pipeline_files(out):
        refuse_overwrite(p, force)
    manifest = load_data(data)
    ckpt = Path(str(out) + ".checkpoint")
    with progress_bar() as bar:
        dec = bar.add_task("decoding", total=len(manifest))
        ep = bar.add_task("training", total=exp.train_config().epochs)
        try:
            pipe, history, m = train_pipeline(manifest, exp, on_epoch=epoch_printer(bar, ep),
                                              decode_progress=lambda n: bar.advance(dec, n),
                                              checkpoint_dir=ckpt, resume=resume)
        except ValueError as e:
            fail(str(e))
    pipe.save(out, overwrite=force)
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)
    if m is None:
        console.print(f"no validation speakers: trained on every speaker for all {len(history.epochs)} epochs "
                      f"({len(pipe.labels)} classes: {', '.join(pipe.labels)}); no speaker-independent figure",
                      highlight=False)
    else:
        console.print(f"best epoch {history.best_epoch + 1}; validation speakers {', '.join(pipe.meta['validation_speakers'])}: "
                      f"UA {m['ua']:.3f}, WA {m['wa']:.3f}, macro-F1 {m['macro_f1']:.3f} (speaker-independent, "
                      f"{len(pipe.labels)} classes: {', '.join(pipe.labels)})", highlight=False)
    console.print(f"pipeline written to {pipeline_files(out)[0]} and {pipeline_files(out)[1].name}", highlight=False)


def check_run_dir(out: Path | None, resume: bool) -> None:
    """Refuse to write into a folder that holds a run, unless resuming it."""
    if out is not None and (out / "metrics.json").exists() and not resume:
        fail(f"{out} holds a finished run; pass --resume to reuse its folds or choose another --out")
    elif out is not None and out.exists() and any(out.glob("fold*")) and not resume:
        fail(f"{out} holds an unfinished run; pass --resume to continue it or choose another --out")


@app.command("cv")
def cv_cmd(
    data: DataArgs,
    model: ModelOpt = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="speaker-kfold, loso, random (speaker-dependent) or repeated-kfold (speaker-dependent).  [default: speaker-kfold]")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="k of the k-fold protocols.  [default: 6 speaker folds; 10 repeated]")] = None,
    max_folds: Annotated[Optional[int], typer.Option("--max-folds", help="Run only the first N folds (a quick look; the mean is then over N).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory.  [default: runs/<model>-<time>]")] = None,
    config: ConfigOpt = None, task: TaskOpt = None, channel: ChannelOpt = None, intensity: IntensityOpt = None,
    emotions: EmotionsOpt = None, gender: GenderOpt = None, epochs: EpochsOpt = None, lr: LrOpt = None,
    batch_size: BatchOpt = None, seed: SeedOpt = None,
    per_gender: Annotated[Optional[bool], typer.Option("--per-gender/--no-per-gender", help="One model per gender.")] = None,
    resume: ResumeOpt = False, encoder: EncoderOpt = None, speaker_norm: SpeakerNormOpt = None,
    degraded_copies: CopiesOpt = None, voice_copies: VoiceCopiesOpt = None,
    extra_train: Annotated[Optional[list[str]], typer.Option("--extra-train", help="More training speakers: a corpus folder (or name:folder) whose clips join every fold's training side, never its validation or test side; clips of the fold's validation and test speakers and of classes the run lacks stay out. Repeat for more.")] = None,
    executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None, cpus_per_task: TaskCpusOpt = 1,
):
    """Cross-validate a model under a protocol and write a run directory (metrics.json, report.md, plots)."""
    from .experiment import cross_validate
    from .report import new_run_dir, summary_table

    exp = build_experiment(config, model=model, protocol=protocol, folds=folds, max_folds=max_folds, task=task,
                           channel=channel, intensity=intensity, emotions=emotions, gender=gender, epochs=epochs,
                           lr=lr, batch_size=batch_size, seed=seed, per_gender=per_gender,
                           encoder=str(encoder) if encoder else None, speaker_norm=speaker_norm,
                           degraded_copies=degraded_copies, voice_copies=voice_copies,
                           extra_train=tuple(extra_train) if extra_train else None)
    check_run_dir(out, resume)
    runner = open_executor(executor, ray_address, cpus_per_task)
    manifest = load_data(data)
    out = out or new_run_dir("runs", exp.model)  # created only once the data is known to load
    with progress_bar() as bar:
        dec = bar.add_task("decoding", total=len(manifest))
        fold_task = bar.add_task("folds", total=None)
        ep = bar.add_task("training", total=None if exp.is_baseline else exp.train_config().epochs)

        fold_line = fold_printer("cv")

        def on_fold(i, n, m):
            bar.update(fold_task, total=n, advance=1, description=f"fold {i + 1}/{n}: UA {m['ua']:.3f}")
            bar.reset(ep)
            fold_line(f"{exp.model}, {exp.protocol}", i, n, m)

        try:
            metrics = cross_validate(manifest, exp, out, resume=resume, on_fold=on_fold, executor=runner,
                                     on_epoch=epoch_printer(bar, ep), decode_progress=lambda n: bar.advance(dec, n))
        except ValueError as e:
            fail(str(e))
    console.print(summary_table(metrics))
    console.print(f"run written to {out}", highlight=False)


@app.command("tune")
def tune_cmd(
    data: DataArgs,
    space: Annotated[Path, typer.Option("--space", help="TOML search space: [train], [model_overrides], [frontend] tables; a key is a value or {loguniform = [a, b]}, {uniform = [a, b]}, {randint = [a, b]}, {choice = [...]}.")],
    model: ModelOpt = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Settings tried inside each outer fold.")] = 8,
    grace: Annotated[int, typer.Option("--grace", min=1, help="ASHA: epochs every trial runs before it may be stopped.")] = 1,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="Outer folds: speaker-kfold or loso (trials are scored on each fold's validation speakers).  [default: speaker-kfold]")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="k of the outer speaker k-fold.  [default: 6]")] = None,
    max_folds: Annotated[Optional[int], typer.Option("--max-folds", help="Sweep only the first N outer folds.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (metrics.json, report.md, sweep.json).  [default: runs/tune-<model>-<time>]")] = None,
    config: ConfigOpt = None, task: TaskOpt = None, channel: ChannelOpt = None, intensity: IntensityOpt = None,
    emotions: EmotionsOpt = None, gender: GenderOpt = None, epochs: EpochsOpt = None, seed: SeedOpt = None,
    resume: ResumeOpt = False,
    executor: Annotated[str, typer.Option("--executor", help="local: Ray Tune on an embedded Ray instance of this machine, the retrains in this process; ray: the instance or cluster RAY_ADDRESS or --ray-address names, the retrains as tasks. Both need voxemo[ray].")] = "local",
    ray_address: RayAddressOpt = None, cpus_per_task: TaskCpusOpt = 1,
):
    """Nested hyper-parameter search (Ray Tune, ASHA early stopping): trials scored on each outer fold's
    validation speakers only, the chosen settings retrained and scored on its test speakers."""
    import json

    from .config import ConfigError
    from .executors import ExecutorError, ray_init
    from .report import new_run_dir, summary_table
    from .sweep import load_space, nested_sweep

    exp = build_experiment(config, model=model, protocol=protocol, folds=folds, max_folds=max_folds, task=task,
                           channel=channel, intensity=intensity, emotions=emotions, gender=gender, epochs=epochs, seed=seed)
    try:
        search = load_space(space, exp)
    except ConfigError as e:
        fail(str(e))
    check_run_dir(out, resume)
    runner = open_executor(executor, ray_address, cpus_per_task)
    if executor == "local":
        try:
            ray_init(address="local")
        except ExecutorError as e:
            fail(str(e))
    manifest = load_data(data)
    out = out or new_run_dir("runs", f"tune-{exp.model}")
    with progress_bar() as bar:
        dec = bar.add_task("decoding", total=len(manifest))
        fold_task = bar.add_task("outer folds", total=None)

        def on_fold(i, n, m):
            bar.update(fold_task, total=n, advance=1, description=f"fold {i + 1}/{n}: test UA {m['ua']:.3f}")

        try:
            metrics = nested_sweep(manifest, exp, search, out, trials=trials, executor=runner, grace_period=grace,
                                   resume=resume, on_fold=on_fold, decode_progress=lambda n: bar.advance(dec, n))
        except ValueError as e:
            fail(str(e))
    for f in metrics["sweep"]:
        console.print(f"{f['fold']}: chosen {json.dumps(f['chosen'])}; test UA {f['test_ua']:.3f}, WA {f['test_wa']:.3f}",
                      highlight=False, soft_wrap=True)
    console.print(summary_table(metrics))
    console.print(f"run written to {out} (sweep.json: every trial)", highlight=False)


@app.command("evaluate")
def evaluate_cmd(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline path (PIPELINE.json + PIPELINE.safetensors), or a fusion's folder (voxemo fuse).")],
    data: DataArgs,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Also write each clip's label and probabilities, one JSON object a line (what `voxemo predict` gives for that file).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --predictions file.")] = False,
    encoder: EncoderOpt = None,
):
    """Score a saved pipeline (or a fusion) on a corpus, also another corpus than it was trained on."""
    import json

    from .experiment import score_pipeline
    from .fusion import load_pipeline_or_fusion
    from .pipeline import PipelineError
    from .predict import resolve_model

    if predictions is not None:
        refuse_overwrite(predictions, force)
    try:
        pipe = load_pipeline_or_fusion(resolve_model(pipeline), encoder)
    except PipelineError as e:
        fail(str(e))
    manifest = load_data(data)
    try:
        m = score_pipeline(pipe, manifest, per_clip=predictions is not None)
    except ValueError as e:
        fail(str(e))
    if predictions is not None:
        predictions.parent.mkdir(parents=True, exist_ok=True)
        predictions.write_text("".join(json.dumps(c) + "\n" for c in m.pop("clips")))
    if json_out:
        console.print_json(json.dumps(m))
        return
    console.print(f"{m['n']} clips, {len(m['classes'])} classes ({', '.join(m['classes'])}); protocol: {m['protocol']}", highlight=False)
    console.print(f"UA {m['ua']:.3f}  WA {m['wa']:.3f}  macro-F1 {m['macro_f1']:.3f}", highlight=False)
    if m["unmapped"]:
        console.print(styled(f"left out {m['n_unmapped']} clips whose labels the model does not know:", "yellow",
                             f" {', '.join(m['unmapped'])}"))


@app.command("fuse")
def fuse_cmd(
    members: Annotated[list[Path], typer.Argument(help="Two or more pipeline paths (or bundled model names) with the same labels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the fusion: fusion.json and one pipeline per member.")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="One positive weight per member, comma-separated, fixed in advance (never chosen on test clips).  [default: equal]")] = None,
    weights_from: Annotated[Optional[list[str]], typer.Option("--weights-from", help="Choose two members' weights (0.1 .. 0.9) by the fusion's UA on this labelled corpus: held-out speakers, not the clips you will test on. Repeatable.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite a fusion already in --out.")] = False,
    encoder: EncoderOpt = None,
):
    """Fuse trained pipelines late: a clip's probabilities are the weighted mean of theirs, each member
    hearing the clip its own way. The folder works wherever a pipeline path does (predict, evaluate, serve)."""
    from .experiment import fusion_weights_on
    from .fusion import Fusion
    from .pipeline import PipelineError, load_pipeline
    from .predict import resolve_model

    if weights is not None and weights_from:
        fail("give --weights or --weights-from, not both")
    if weights_from and len(members) != 2:
        fail(f"--weights-from weighs two members, not {len(members)}")
    try:
        w = None if weights is None else [float(v) for v in weights.split(",")]
    except ValueError:
        fail(f"--weights takes numbers separated by commas, not {weights!r}")
    if weights_from and not force and (out / "fusion.json").exists():  # before the corpus is heard
        fail(f"{out / 'fusion.json'} exists; pass --force to replace it")
    try:
        pipes = [load_pipeline(resolve_model(m), encoder) for m in members]
        if weights_from:
            manifest = load_data(weights_from)
            try:
                w, ua, n = fusion_weights_on(pipes, manifest)
            except ValueError as e:
                fail(str(e))
            console.print(f"weights chosen on {n} clips of {', '.join(weights_from)}: UA {ua:.3f} there", highlight=False)
        fusion = Fusion(pipes, w)
        config = fusion.save(out, overwrite=force)
    except PipelineError as e:
        fail(str(e))
    except FileExistsError as e:
        fail(str(e).replace("overwrite=True (CLI: --force)", "--force"))
    parts = ", ".join(f"{m.name} {v:.2f}" for m, v in zip(fusion.members, fusion.weights))
    console.print(f"{config}: {parts}; {len(fusion.labels)} classes: {', '.join(fusion.labels)}", highlight=False, soft_wrap=True)
    if fusion.speaker_norm:
        console.print(styled("note:", "yellow", " a member normalises each speaker over their clips, so the fusion scores a "
                             "corpus (voxemo evaluate) but does not label single clips"), highlight=False)


@app.command("adapt")
def adapt_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Your recordings, unlabelled: audio files or folders (searched recursively), or a .txt list of paths. At least 20 with speech.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pipeline path for the adapted model: writes OUT.safetensors and OUT.json.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Pipeline path, or a bundled model: voxemo_whisper (the default) or voxemo_net.")] = None,
    force: ForceOpt = False,
    encoder: EncoderOpt = None,
):
    """Adapt a model to your voices, rooms and microphones without labels: its input standardisation is
    refit on your recordings (each corpus standardised with its own statistics); nothing else changes."""
    from .adapt import adapt
    from .fusion import load_pipeline_or_fusion
    from .pipeline import PipelineError, pipeline_files
    from .predict import resolve_model

    for p in pipeline_files(out):
        refuse_overwrite(p, force)
    files = expand_inputs(inputs)
    try:
        pipe = load_pipeline_or_fusion(resolve_model(model), encoder)
        with progress_bar() as bar:
            task = bar.add_task("hearing your recordings", total=len(files))
            got = adapt(pipe, files, progress=lambda n: bar.advance(task, n))
    except PipelineError as e:
        fail(str(e))
    for e in got["errors"]:
        err.print(styled("skipped:", "yellow", f" {e['error']}"), highlight=False, soft_wrap=True)
    pipe.meta["adapted"]["source"] = ", ".join(str(p) for p in inputs)
    pipe.save(out, overwrite=force)
    console.print(f"adapted {pipe.name} on {got['clips']} recordings with speech ({len(got['no_speech'])} without speech "
                  f"and {len(got['errors'])} unreadable skipped); written to {pipeline_files(out)[0]} and "
                  f"{pipeline_files(out)[1].name}", highlight=False, soft_wrap=True)


def duration(seconds: float) -> str:
    """45 s, 12 min, 3.4 h."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fold_printer(name: str):
    """on_fold for `reproduce` and `cv`: a line on stderr as each network fold finishes (its figures
    and wall time, and the time its run's remaining folds will take at the mean pace of its finished
    ones, folds kept from earlier sittings included), so an hours-long run shows where it is, also in
    a log file (where progress bars leave nothing). Kept folds and SVM folds (seconds each) print
    nothing."""
    paces: dict[str, list[float]] = {}

    def on_fold(run: str, i: int, n: int, m: dict):
        if m.get("seconds") is None:
            return
        pace = paces.setdefault(run, [])
        pace.append(m["seconds"])
        if m.get("resumed"):
            return
        left = n - len(pace)
        eta = f"{left} fold{'s' if left != 1 else ''} left, about {duration(left * sum(pace) / len(pace))}" if left else "the run's last fold"
        epochs = f"{m['epochs_run']} epochs, " if m.get("epochs_run") else ""  # per-gender folds train two models
        err.print(f"{name}: {run} fold {i + 1}/{n}: UA {100 * m['ua']:.1f}, WA {100 * m['wa']:.1f}, "
                  f"macro-F1 {100 * m['macro_f1']:.1f}, {epochs}{duration(m['seconds'])}; {eta}", highlight=False)

    return on_fold


@app.command("reproduce")
def reproduce_cmd(
    name: Annotated[str, typer.Argument(help="Recipe: seed000, seed001, seed002, seed003, seed004 or baselines (see voxemo/recipes/).")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Folder holding ravdess_speech/, ravdess_song/ and emodb/ (each in its official layout).  [default: $VOXEMO_DATA]")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute smoke run: six speakers, one epoch, one fold. Not comparable with the paper.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Train to convergence, ignoring the recipe's 30-minute [budget]: every fold, each run for the paper's epochs or until the validation score has not improved for the model's patience, whichever comes first (hours on a CPU; resumable with --resume).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (table.md, results.json, one run directory per row and protocol).  [default: runs/reproduce-NAME-<time>]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out: finished folds are kept, a fold in progress continues from its last finished epoch; the table's wall times add up every sitting.")] = False,
    executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None, cpus_per_task: TaskCpusOpt = 1,
    rows: Annotated[Optional[str], typer.Option("--rows", help="Only these rows, as the table numbers them: 7-10 or 1,3 (another process may run the others into the same --out; their table is table-rows-....md, and a run of every row with --resume assembles the whole).  [default: every row]")] = None,
):
    """Rerun a paper's experiment: the paper's figure, ours under its protocol, ours speaker-independent."""
    import os

    from .recipes import list_recipes, load_recipe, parse_rows, reproduce
    from .report import new_run_dir

    if name not in list_recipes():
        fail(f"unknown recipe {name!r}; known: {', '.join(list_recipes())}")
    try:
        chosen = None if rows is None else parse_rows(rows, len(load_recipe(name)["row"]))
    except ValueError as e:
        fail(f"--rows: {e}")
    if quick and full:
        fail("--quick and --full contradict each other: pass one")
    data = data or (Path(os.environ["VOXEMO_DATA"]) if os.environ.get("VOXEMO_DATA") else None)
    if data is None or not data.is_dir():
        fail(f"pass --data DIR (a folder with ravdess_speech/, ravdess_song/, emodb/) or set VOXEMO_DATA; got {data}")
    if resume and out is None:
        fail("--resume continues the run in --out DIR: pass the folder of the interrupted run")
    if out is not None and not resume and out.is_dir() and any(out.iterdir()):
        fail(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    runner = open_executor(executor, ray_address, cpus_per_task)
    out = out or new_run_dir("runs", f"reproduce-{name}" + ("-quick" if quick else "-full" if full else ""))
    with err.status("running") as status:
        try:
            results = reproduce(name, data, out, quick=quick, full=full, on_row=lambda r: status.update(f"{name}: {r}"),
                                executor=runner, rows=chosen, on_fold=fold_printer(name))
        except ValueError as e:
            fail(str(e))
    from rich.markdown import Markdown

    table = results["table_file"]
    console.print(Markdown((out / table).read_text()))
    console.print(f"written to {out}/{table} and {table.replace('table', 'results').replace('.md', '.json')}", highlight=False)

# --- prediction ------------------------------------------------------------------------------------

EncoderOpt = Annotated[Optional[Path], typer.Option("--encoder", help="A local copy of Whisper base (its CTranslate2 model.bin, or the folder holding it) for the encoder models.  [default: the pinned voxemo[whisper] packages]")]
ModelPathOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Pipeline path (P for P.json + P.safetensors, or its folder), a fusion's folder (voxemo fuse), or a bundled model: voxemo_whisper (the default) or voxemo_net (small and fastest).")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help="torch; onnx (the same graph exported and run in onnxruntime); or onnx-int8 (that graph with its large matrix products in int8: faster on CPUs with int8 instructions, a few labels differ; benchmarks/quantization.py).")]
FORMATS = ("table", "csv", "json")
NO_SPEECH = "no speech"  # the label column of table and CSV output for a clip without speech (JSON: label null)


def load_predictor(model: Path | None, runtime: str = "torch", threads: int = 1, encoder: Path | None = None):
    """A Predictor, with clear errors for a missing model or a missing ONNX install."""
    from .export import ExportError
    from .pipeline import PipelineError
    from .predict import RUNTIMES, load_model

    if runtime not in RUNTIMES:
        fail(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    try:
        return load_model(model, runtime, threads=threads, encoder=encoder)
    except PipelineError as e:
        fail(str(e))
    except ExportError as e:
        fail(f"cannot run this model in onnxruntime: {e}")
    except ImportError as e:
        fail(f"--runtime {runtime} needs onnx and onnxruntime ({e.name} is missing): pip install 'voxemo[onnx]'")


def expand_inputs(items: list[Path]) -> list[Path]:
    """Folders -> their audio files (sorted, recursively); a .txt file -> the paths it lists, one a
    line (blank lines and lines starting with # skipped); files kept as given, even missing ones
    (they are reported per file)."""
    from .corpora import audio_files

    out = []
    for p in items:
        if p.suffix == ".txt" and p.is_file():
            out += [Path(line.strip()) for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
        elif p.is_dir():
            found = audio_files(p)
            if not found:
                err.print(styled("warning:", "yellow", f" {p}: no audio files in this folder"), highlight=False)
            out += found
        else:
            out.append(p)
    return out


def _top(probs: dict, n: int = 3) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:n])


def print_timeline(path, tl: dict, fmt: str, writer) -> None:
    """One recording's segments as JSON (one line), CSV rows, or a table."""
    import json

    segs = tl["segments"]
    if fmt == "json":
        segs = [{**s, "probabilities": {k: round(v, 6) for k, v in s["probabilities"].items()}} for s in segs]
        typer.echo(json.dumps({"path": str(path), "duration": tl["duration"], "speech": tl["speech"], "segments": segs}))
        return
    if fmt == "csv":
        for s in segs:
            writer.writerow([path, s["start"], s["end"], s["label"], s["confidence"]])
        return
    speech = sum(e - s for s, e in tl["speech"])
    console.print(styled(str(path), "bold", f": {tl['duration']:.1f} s, speech {speech:.1f} s, {len(segs)} segments"), highlight=False)
    if not segs:
        console.print("  no speech found")
        return
    t = Table(show_edge=False)
    for c, j in (("start", "right"), ("end", "right"), ("emotion", "left"), ("confidence", "right"), ("next best", "left")):
        t.add_column(c, justify=j)
    for s in segs:
        rest = {k: v for k, v in s["probabilities"].items() if k != s["label"]}
        t.add_row(f"{s['start']:.2f}", f"{s['end']:.2f}", s["label"], f"{s['confidence']:.2f}", _top(rest, 2))
    console.print(t)


def report_error(path, message: str, fmt: str, writer, n_labels: int | None = None) -> None:
    """A file that could not be predicted: one line on stderr, and a record in JSON or (per clip) CSV output."""
    import json

    err.print(styled("error:", "bold red", f" {message}"), highlight=False)
    if fmt == "json":
        typer.echo(json.dumps({"path": str(path), "error": message}))
    elif writer and n_labels is not None:
        writer.writerow([path, "", *[""] * n_labels, message])


def print_timelines(predictor, files: list[Path], fmt: str, writer, window: float, hop: float, plot: Path | None) -> int:
    """Each recording's timeline printed (and drawn into `plot`); returns how many files failed."""
    from .audio import AudioError
    from .predict import plot_timeline

    failed = 0
    if writer:
        writer.writerow(["path", "start", "end", "label", "confidence"])
    with progress_bar() as bar:
        task = bar.add_task("timelines", total=len(files))
        for path in files:
            try:
                tl = predictor.timeline(path, window=window, hop=hop)
            except AudioError as e:
                report_error(path, str(e), fmt, writer)
                failed += 1
                continue
            finally:
                bar.advance(task)
            print_timeline(path, tl, fmt, writer)
            if plot is not None:
                plot_timeline(tl, plot, title=str(path))
                err.print(f"timeline drawn into {plot}", highlight=False)
    return failed


def print_predictions(predictor, files: list[Path], fmt: str, writer) -> int:
    """One prediction per file, as a table (with the file name's label when it has one), CSV or JSON lines;
    returns how many files failed."""
    import json

    from .corpora import label_from_name

    labels, results = predictor.labels, []
    if writer:
        writer.writerow(["path", "label", *labels, "error"])
    named = {path: label_from_name(path) for path in files}
    show_named = any(v is not None for v in named.values())
    table = Table(show_edge=False)
    table.add_column("file", overflow="fold")
    for c, j in (("emotion", "left"), ("confidence", "right"), ("most likely", "left")):
        table.add_column(c, justify=j, no_wrap=c != "most likely")
    if show_named:
        table.add_column("labelled")
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=len(files))
        for path in files:
            r = predictor.predict_many([path])[0]
            results.append(r)
            bar.advance(task)
            if "error" in r:
                report_error(path, r["error"], fmt, writer, len(labels))
                continue
            if r.get("no_speech"):  # a result, not a failure: no emotion for noise, tones, silence
                if fmt == "json":
                    typer.echo(json.dumps({"path": str(path), "label": None, "no_speech": True, "speech": r["speech"]}))
                elif writer:
                    writer.writerow([path, NO_SPEECH, *[""] * len(labels), ""])
                else:
                    table.add_row(str(path), NO_SPEECH, "", "no emotion given",
                                  *([named[path] or ""] if show_named else []))
                continue
            p = r["probabilities"]
            if fmt == "json":
                typer.echo(json.dumps({"path": str(path), "label": r["label"], "probabilities": {k: round(v, 6) for k, v in p.items()}}))
            elif writer:
                writer.writerow([path, r["label"], *[f"{p[k]:.4f}" for k in labels], ""])
            else:
                table.add_row(str(path), r["label"], f"{p[r['label']]:.2f}", _top(p), *([named[path] or ""] if show_named else []))
    if table.row_count:
        console.print(table)
        known = [(named[f], r) for f, r in zip(files, results) if named[f] in labels and r.get("label")]
        other = sorted({named[f] for f, r in zip(files, results) if named[f] and named[f] not in labels and r.get("label")})
        if known:
            right = sum(n == r["label"] for n, r in known)
            console.print(f"{right} of {len(known)} files predicted as their file name labels them"
                          + (f" (not counted: files named {', '.join(other)}, a label this model does not have)" if other else ""),
                          highlight=False)
    return sum("error" in r for r in results)


def check_plot(plot: Path, files: list[Path], force: bool) -> None:
    if len(files) != 1:
        fail(f"--plot draws one recording; {len(files)} files were given")
    if plot.suffix.lower() != ".png":
        fail(f"--plot must end in .png, not {plot.name!r}")
    refuse_overwrite(plot, force)


def predict_to_file(files, out, model, runtime, executor, ray_address, cpus, workers, timeline) -> None:
    """`voxemo predict --out FILE`: every file not yet in FILE predicted and appended (bulk.predict_files)."""
    from .bulk import predict_files
    from .export import ExportError
    from .pipeline import PipelineError

    if out is None:
        fail(f"--executor {executor} writes its results to a file: pass --out FILE.jsonl")
    if timeline:
        fail("--out writes one prediction per file; --timeline and --plot print theirs")
    load_predictor(model, runtime)  # a missing model or runtime: one line here, not in every worker
    runner = open_executor(executor, ray_address, cpus)
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=len(files))
        try:
            c = predict_files(files, out, model=model, runtime=runtime, executor=runner, workers=workers,
                              progress=lambda n: bar.advance(task, n))
        except (PipelineError, ExportError) as e:
            fail(str(e))
        bar.update(task, completed=len(files))
    console.print(f"{c['written']} files predicted into {out} ({c['done_before']} were there already; "
                  f"{c['no_speech']} without speech, {c['failed']} could not be read)", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if c["failed"] else 0)


@app.command("predict")
def predict_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files or folders (searched recursively for audio files).")],
    model: ModelPathOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, or json (one JSON record per input, per line).")] = "table",
    timeline: Annotated[bool, typer.Option("--timeline", help="Long recordings: emotion segments over time, on speech found by voice activity detection.")] = False,
    window: Annotated[float, typer.Option("--window", help="Timeline: seconds per analysis window.")] = 2.0,
    hop: Annotated[float, typer.Option("--hop", help="Timeline: seconds between window starts.")] = 0.5,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Timeline: also draw it into this PNG (one input file; implies --timeline).")] = None,
    runtime: RuntimeOpt = "torch",
    threads: Annotated[int, typer.Option("--threads", help="onnxruntime intra-op threads (--runtime onnx).")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write one JSON object a line (as --format json) to this file as results come, instead of printing; a rerun skips the files already in it (for large file lists).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="With --out: local (this process) or ray (a pool of Ray Data workers, each loading the model once; needs voxemo[ray]).")] = "local",
    ray_address: RayAddressOpt = None, cpus_per_task: TaskCpusOpt = 1,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="--executor ray: workers in the pool.  [default: the cluster's CPUs / --cpus-per-task]")] = None,
    force: ForceOpt = False,
    encoder: EncoderOpt = None,
):
    """Predict the emotion of audio files, or follow it over time through long recordings (--timeline).

    A file without speech (noise, tones, silence) is reported as "no speech", not given an emotion, and is not a failure.
    A file that cannot be read (not audio, truncated, empty) gets a one-line error naming it, the others are still
    predicted, and the exit status is 1.
    """
    import csv
    import sys

    from .predict import MIN_WINDOW

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if window < MIN_WINDOW or hop <= 0:
        fail(f"--window must be at least {MIN_WINDOW:g} s and --hop positive")
    files = expand_inputs(inputs)
    if not files:
        fail("no audio files to predict")
    if out is not None or executor != "local":
        predict_to_file(files, out, model, runtime, executor, ray_address, cpus_per_task, workers, timeline or plot is not None)
    if plot is not None:
        timeline = True
        check_plot(plot, files, force)
    predictor = load_predictor(model, runtime, threads, encoder)
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if timeline:
        failed = print_timelines(predictor, files, fmt, writer, window, hop, plot)
    else:
        failed = print_predictions(predictor, files, fmt, writer)
    if failed and not timeline:
        err.print(f"{failed} of {len(files)} files could not be predicted", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command("export")
def export_cmd(
    onnx: Annotated[Path, typer.Option("--onnx", help="Output ONNX file.")],
    model: Annotated[Optional[Path], typer.Argument(help="Pipeline path (P for P.json + P.safetensors); without it, the model bundled with voxemo.")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = 17,
    force: ForceOpt = False,
    encoder: EncoderOpt = None,
    int8: Annotated[bool, typer.Option("--int8", help="Quantise the graph's large matrix products to int8 (run it with --runtime onnx-int8).")] = False,
):
    """Export a pipeline (front-end, normaliser, model, softmax) as one ONNX graph: waveform in, probabilities out."""
    from .export import ExportError, export_onnx
    from .fusion import is_fusion
    from .pipeline import PipelineError, load_pipeline
    from .predict import resolve_model

    refuse_overwrite(onnx, force)
    if model is not None and is_fusion(model):
        fail(f"{model} is a fusion: one ONNX graph per member, so export each member ({model}/member1, ...); "
             "`voxemo predict --runtime onnx` runs a fusion member by member")
    try:
        pipe = load_pipeline(resolve_model(model), encoder)
    except PipelineError as e:
        fail(str(e))
    try:
        info = export_onnx(pipe, onnx, opset, overwrite=force, int8=int8)
    except ExportError as e:
        fail(str(e))
    except ImportError as e:
        fail(f"ONNX export needs onnx and onnxruntime ({e.name} is missing): pip install 'voxemo[onnx]'")
    n = info["input_samples"]
    length = "any length" if n == "dynamic" else f"fixed length {n} samples ({int(n) / pipe.audio.sample_rate:g} s; the model needs its training length)"
    console.print(f"{onnx}: {pipe.model.name}, input 'waveform' (batch, samples) float32 mono at {pipe.audio.sample_rate} Hz, "
                  f"{length}; output 'probabilities' (batch, {len(pipe.labels)}): {', '.join(pipe.labels)}", highlight=False, soft_wrap=True)
    int8_note = f"; {info['int8_products']} matrix products in int8" if int8 else ""
    console.print(f"checked in onnxruntime against torch: largest probability difference {info['parity']:.1e}{int8_note}",
                  highlight=False, soft_wrap=True)


def show_segments(results) -> None:
    """Live segments as they end: times, emotion, confidence, the next two."""
    for r in results:
        rest = _top({k: v for k, v in r["probabilities"].items() if k != r["label"]}, 2)
        console.print(Text.assemble(f"{r['start']:8.2f}-{r['end']:.2f} s  ", (r["label"], "bold"),
                                    f" {r['confidence']:.2f}  ({rest})"), highlight=False)


def stream_microphone(sd, listener, rate: int, device) -> None:
    """Feed the input device's samples to `listener` and show its segments until Ctrl-C."""
    import queue

    chunks: queue.Queue = queue.Queue()

    def callback(indata, frames, time, status):  # PortAudio's thread: hand the samples over, nothing more
        chunks.put(indata[:, 0].copy())

    try:
        stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=rate // 10, device=device, callback=callback)
    except (ValueError, sd.PortAudioError) as e:
        fail(f"cannot open the microphone: {e}")
    err.print(f"listening at {rate} Hz; Ctrl-C stops", highlight=False)
    try:
        with stream:
            while True:
                show_segments(listener.feed(chunks.get()))
    except KeyboardInterrupt:
        show_segments(listener.flush())


@app.command("listen")
def listen_cmd(
    model: ModelPathOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Input device: a number or part of a name (see `python -m sounddevice`); without it, the system's default.")] = None,
    window: Annotated[float, typer.Option("--window", help="Seconds per analysis window within a speech segment.")] = 2.0,
    encoder: EncoderOpt = None,
):
    """Listen to the microphone and print the emotion of each speech segment as it ends (Ctrl-C stops)."""
    from .predict import MIN_WINDOW, StreamListener

    try:
        import sounddevice as sd
    except ImportError:
        fail("live input needs the sounddevice package: pip install 'voxemo[mic]'")
    except OSError as e:
        fail(f"live input needs the PortAudio library ({e}); on Debian or Ubuntu: apt-get install libportaudio2")
    if window < MIN_WINDOW:
        fail(f"--window must be at least {MIN_WINDOW:g} s")
    predictor = load_predictor(model, encoder=encoder)
    dev = int(device) if device is not None and device.isdigit() else device
    try:
        rate = int(sd.query_devices(dev, "input")["default_samplerate"])
    except (ValueError, sd.PortAudioError) as e:
        fail(f"no usable input device{f' {device!r}' if device is not None else ''}: {e}")
    stream_microphone(sd, StreamListener(predictor, rate, window=window), rate, dev)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port (1-65535).")] = 8000,
    model: ModelPathOpt = None,
    runtime: RuntimeOpt = "torch",
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload in MB (413 above).")] = 20.0,
    max_duration: Annotated[float, typer.Option("--max-duration", min=1.0, help="Longest accepted recording in seconds (413 above).")] = 600.0,
    budget: Annotated[float, typer.Option("--budget", min=1.0, help="Seconds of waiting and inference one request may take (503 above).")] = 60.0,
    encoder: EncoderOpt = None,
):
    """Serve the model over HTTP: a web page at /, POST /predict, GET /health and /model, docs at /docs."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        fail(f"the service needs fastapi, uvicorn and python-multipart ({e.name} is missing): pip install 'voxemo[serve]'")
    from .serve import create_app

    predictor = load_predictor(model, runtime, encoder=encoder)
    web = create_app(predictor, max_upload_mb=max_upload_mb, max_duration_s=max_duration, budget_s=budget)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"voxemo: {', '.join(predictor.labels)} ({runtime}) on http://{shown}:{port}/  (API docs at /docs; Ctrl+C stops)",
                  highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="info")


def main():
    app()


if __name__ == "__main__":
    main()
