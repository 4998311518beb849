"""A user's own labelled recordings, in one of two layouts.

- Folders: `ROOT/<label>/*.wav`, or `ROOT/<label>/<speaker>/*.wav` to name speakers too (needed for
  speaker-independent evaluation). The label is the folder name, mapped to a canonical emotion
  name where it is a known spelling ("Anger" -> "angry"), kept lower-cased otherwise.
- CSV: a `.csv` file in ROOT (or the CSV itself given as ROOT) with a header and the columns
  `path,label` and optionally `speaker,gender`; relative paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

from . import EMOTION_ALIASES, Collector, CorpusError, Manifest, Utterance, audio_files, canonical_emotion, scan_files

NAME = "folder"
GENDERS = {"f": "female", "female": "female", "w": "female", "m": "male", "male": "male"}


def _gender(value: str | None) -> str:
    return GENDERS.get((value or "").strip().lower(), "unknown")


def _csv_file(root: Path) -> Path | None:
    """The labels CSV: `root` itself, or the one CSV in `root` with a path column (a CSV of other
    things, such as CREMA-D's VideoDemographics.csv, is not taken for one)."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    tables = [t for t in sorted(root.glob("*.csv")) if "path" in _header(t)] if root.is_dir() else []
    return tables[0] if len(tables) == 1 else None


def _header(table: Path) -> set[str]:
    with open(table, newline="", encoding="utf-8-sig", errors="replace") as f:
        return {c.strip().lower() for c in next(csv.reader(f), [])}


def scan(root: Path, *, strict: bool = False) -> Manifest:
    table = _csv_file(root)
    if table is not None:
        return scan_csv(table, strict=strict)

    def parse(path: Path) -> Utterance | str:
        rel = path.relative_to(root).parts
        if len(rel) < 2:
            return "file lies directly in the corpus folder; put it in a folder named after its label"
        label = canonical_emotion(rel[0])
        speaker = rel[1] if len(rel) >= 3 else "unknown"
        return Utterance(path=str(path.resolve()), corpus=NAME, speaker=f"{NAME}:{speaker}",
                         gender="unknown", emotion=label)

    return scan_files(audio_files(root), parse, strict=strict)


def scan_csv(table: Path, *, strict: bool = False) -> Manifest:
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower() for c in reader.fieldnames or []}
        if not {"path", "label"} <= columns:
            raise CorpusError(f"{table}: a labels CSV needs a header with the columns path,label[,speaker,gender]; found {sorted(columns)}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    out = Collector(strict)
    good: dict[Path, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        path = (table.parent / row["path"]).resolve() if row["path"] else None
        if path is None or not row["label"]:
            out.reject(f"{table}:{line}", "row lacks a path or a label")
        elif not path.is_file():
            out.reject(path, f"file not found (listed in {table.name}, line {line})")
        else:
            good[path] = row

    def parse(path: Path) -> Utterance:
        row = good[path]
        return Utterance(path=str(path), corpus=NAME, speaker=f"{NAME}:{row.get('speaker') or 'unknown'}",
                         gender=_gender(row.get("gender")), emotion=canonical_emotion(row["label"]))

    found = scan_files(good, parse, strict=strict)
    return Manifest(found, out.manifest.problems + found.problems)


def looks_like(root: Path, sample: list[Path]) -> int:
    """Files in folders (below root) named after a known emotion (three letters or more), or a labels CSV."""
    if _csv_file(root) is not None:
        return 1
    known = {k for k in EMOTION_ALIASES if len(k) >= 3}
    return sum(any(part.lower() in known for part in p.relative_to(root).parts[:-1][:2]) for p in sample)
