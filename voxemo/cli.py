"""The `voxemo` command: thin commands, each parsing flags and calling one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="voxemo: recognise emotion in speech and song.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Inspect corpora: files, speakers, labels, durations, problems.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err = Console(stderr=True, soft_wrap=True)

CorpusOpt = Annotated[
    Optional[str],
    typer.Option("--corpus", "-c", help="Corpus layout: ravdess, emodb, tess, savee, cremad or folder. Default: detected from the folder."),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on the first file whose name does not fit the corpus, instead of reporting it.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]


def fail(message: str, code: int = 2):
    err.print(f"[bold red]error:[/] {message}", highlight=False)
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


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=False)


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
    console.print(f"[bold]{path}[/]: {s['files']} files, corpus {', '.join(s['corpora'])}, "
                  f"channel {', '.join(f'{k} {v}' for k, v in s['channels'].items())}", highlight=False)
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
        console.print(f"[yellow]{len(s['problems'])} files skipped:[/]")
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
    path: Annotated[str, typer.Argument(help="Corpus folder, or NAME:FOLDER.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="logmel, mfcc, stft, mean_mfcc, egemaps or compare.")] = "logmel",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file (features, lengths, path, emotion, speaker, gender).")] = Path("features.npz"),
    corpus: CorpusOpt = None,
    strict: StrictOpt = False,
    sample_rate: Annotated[int, typer.Option("--sr", help="Sample rate the audio is resampled to (Hz).")] = 16000,
    offset: Annotated[float, typer.Option(help="Seconds skipped at the start of each clip (the papers use 0.5).")] = 0.5,
    duration: Annotated[float, typer.Option(help="Seconds kept per clip, zero-padded when shorter; 0 keeps whole clips.")] = 3.0,
    n_mels: Annotated[int, typer.Option(help="Mel bands (logmel, mfcc).")] = 128,
    n_mfcc: Annotated[int, typer.Option(help="Cepstral coefficients (mfcc, mean_mfcc).")] = 40,
    cache: Annotated[bool, typer.Option(help="Use the decoded-waveform cache ($VOXEMO_CACHE_DIR or the user cache folder).")] = True,
    force: ForceOpt = False,
):
    """Extract features for a corpus into one .npz file, with a progress bar."""
    import tempfile

    from .audio import AudioError
    from .cache import AudioSettings
    from .data import extract_features
    from .features import KINDS, SMILE_SETS, FrontendConfig

    if kind not in KINDS + SMILE_SETS:
        fail(f"--kind must be one of {', '.join(KINDS + SMILE_SETS)}, not {kind!r}")
    if out.suffix != ".npz":
        fail(f"--out must end in .npz, not {out.name!r}")
    refuse_overwrite(out, force)
    m = scan_data(path, corpus, strict)
    settings = AudioSettings(sample_rate, offset, duration or None)
    cfg = None if kind in SMILE_SETS else FrontendConfig.for_kind(kind, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc)
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
        err.print(f"[yellow]skipped[/] {s}", highlight=False)


def main():
    app()


if __name__ == "__main__":
    main()
