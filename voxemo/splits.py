"""Evaluation protocols: which utterances train, which pick the checkpoint, which are tested.

Protocols (`PROTOCOLS`), each giving `Fold`s of integer indices into the utterance list:
- "random":          one stratified random split, 80/10/10 by default. Speakers appear in every part,
                     so it is labelled speaker-dependent; it exists to reproduce the papers.
- "speaker-kfold":   k folds of disjoint test speakers, gender-balanced (RAVDESS, k=6: 2 F + 2 M
                     actors per fold); the validation speakers come from that fold's training
                     speakers. The default protocol.
- "loso":            leave one speaker out (EmoDB: 10 folds), validation speakers from the rest.
- "repeated-kfold":  stratified k-fold repeated with fresh shuffles (seed 004_d4c4: 10 x 5),
                     speaker-dependent; validation is a stratified fraction of each training part.

Speaker-independent folds keep train, validation and test speakers disjoint; `make_folds` checks
every fold with `check_no_leak` before handing it out. Speakers are balanced by count, not by
number of utterances (every corpus here has nearly the same number per speaker).

Also here: `filter_utterances` (channel, intensity, emotions, gender) and `labels_for` (integer
labels and class names for the emotion or gender task, in a fixed order).

scikit-learn's stratified splitters do the stratified protocols; they are imported inside the
functions that use them, so importing this module costs numpy only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .corpora import EMOTIONS, Utterance, canonical_emotion

PROTOCOLS = ("random", "speaker-kfold", "loso", "repeated-kfold")
SPEAKER_INDEPENDENT = {"random": False, "speaker-kfold": True, "loso": True, "repeated-kfold": False}
DEFAULT_RATIOS = (0.8, 0.1, 0.1)  # train, val, test of the random split
DEFAULT_FOLDS = {"speaker-kfold": 6, "repeated-kfold": 10}
DEFAULT_REPEATS = 5  # repeated-kfold, seed 004_d4c4
GENDERS = ("female", "male")  # the gender task's classes, in this order
_GENDER_ORDER = ("female", "male", "unknown")  # order in which speaker groups are dealt out


class LeakError(ValueError):
    """A fold would let the model see test (or validation) speakers, or share an utterance."""


@dataclass
class Fold:
    """One train / validation / test partition; the arrays are sorted indices into the utterance list."""

    name: str  # e.g. "fold 1/6: test ravdess:01,ravdess:02,ravdess:13,ravdess:16"
    protocol: str  # one of PROTOCOLS
    speaker_independent: bool  # True when train, val and test speakers are disjoint
    train: np.ndarray  # int64 indices
    val: np.ndarray  # int64 indices (may be empty)
    test: np.ndarray  # int64 indices


def _idx(a: Iterable[int]) -> np.ndarray:
    return np.sort(np.asarray(list(a) if not isinstance(a, np.ndarray) else a, dtype=np.int64))


def _speaker_list(utts: Sequence[Utterance] | Sequence[str]) -> list[str]:
    return [u if isinstance(u, str) else u.speaker for u in utts]


def _speaker_genders(utts: Sequence[Utterance]) -> dict[str, str]:
    """speaker -> gender, in sorted speaker order; "unknown" where the records disagree or say so."""
    seen: dict[str, set[str]] = {}
    for u in utts:
        seen.setdefault(u.speaker, set()).add(u.gender)
    return {s: (g.pop() if len(g) == 1 else "unknown") for s, g in sorted(seen.items())}


def _gender_groups(speakers: Iterable[str], genders: dict[str, str], rng: np.random.Generator) -> list[list[str]]:
    """The speakers grouped by gender (female, male, other), each group sorted then shuffled."""
    groups = []
    for g in _GENDER_ORDER:
        group = sorted(s for s in speakers if (genders[s] if genders[s] in _GENDER_ORDER else "unknown") == g)
        rng.shuffle(group)
        if group:
            groups.append(group)
    return groups


def _pick_balanced(candidates: Iterable[str], genders: dict[str, str], n: int, rng: np.random.Generator,
                   start: int = 0) -> list[str]:
    """Draw `n` speakers from `candidates`, taking genders in turn (starting with group `start`)."""
    groups = _gender_groups(candidates, genders, rng)
    picked: list[str] = []
    turn = start
    while len(picked) < n and any(groups):
        group = groups[turn % len(groups)]
        if group:
            picked.append(group.pop())
        turn += 1
    return sorted(picked)


def _parts(speakers: list[str], test_spk: set[str], val_spk: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spk = np.asarray(speakers)
    is_test = np.isin(spk, sorted(test_spk))
    is_val = np.isin(spk, sorted(val_spk))
    idx = np.arange(len(spk), dtype=np.int64)
    return idx[~is_test & ~is_val], idx[is_val], idx[is_test]


def _check_val_count(val_speakers: int, n_train_speakers: int, where: str) -> None:
    if val_speakers < 0:
        raise ValueError(f"val_speakers must be >= 0, not {val_speakers}")
    if val_speakers >= n_train_speakers:
        raise ValueError(
            f"{where}: {n_train_speakers} speakers remain outside the test fold, too few to hold out "
            f"{val_speakers} for validation and still train on one"
        )


def random_split(labels: Sequence[int], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> Fold:
    """One random split stratified by label: `ratios` = (train, val, test) fractions summing to 1
    (or (train, test), leaving validation empty). Speaker-dependent."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) == 2:
        ratios = (ratios[0], 0.0, ratios[1])
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6 or ratios[0] == 0 or ratios[2] == 0:
        raise ValueError(f"ratios must be (train, val, test) fractions summing to 1 with train, test > 0, not {ratios}")
    train_r, val_r, test_r = ratios
    idx = np.arange(len(labels), dtype=np.int64)
    rest, test = train_test_split(idx, test_size=test_r, stratify=labels, random_state=seed)
    if val_r > 0:
        train, val = train_test_split(rest, test_size=val_r / (train_r + val_r), stratify=labels[rest],
                                      random_state=seed)
    else:
        train, val = rest, np.empty(0, dtype=np.int64)
    pct = "/".join(f"{round(100 * r)}" for r in ratios)
    return Fold(f"random split {pct} (speaker-dependent), seed {seed}", "random", False,
                _idx(train), _idx(val), _idx(test))


def speaker_kfold(utts: Sequence[Utterance], k: int = 6, seed: int = 0, val_speakers: int = 2) -> list[Fold]:
    """k folds whose test speakers are disjoint and together cover every speaker once.

    Speakers are shuffled within each gender and dealt to folds so every fold gets as even a share of
    each gender as the counts allow (RAVDESS, k=6: 2 F + 2 M per fold). Each fold's `val_speakers`
    validation speakers are drawn from its training speakers, genders taken in turn. Deterministic
    for a given seed.
    """
    genders = _speaker_genders(utts)
    n = len(genders)
    if not 2 <= k <= n:
        raise ValueError(f"speaker k-fold needs 2 <= k <= the number of speakers ({n}), not k={k}")
    _check_val_count(val_speakers, n - -(-n // k), f"speaker k-fold with k={k} over {n} speakers")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    per_gender = [Counter() for _ in range(k)]
    for group in _gender_groups(genders, genders, rng):
        for s in group:  # to the fold with fewest of this gender, then fewest speakers, then first
            g = genders[s]
            best = min(range(k), key=lambda f: (per_gender[f][g], len(folds[f]), f))
            folds[best].append(s)
            per_gender[best][g] += 1
    speakers = _speaker_list(utts)
    out = []
    for f, test_spk in enumerate(folds):
        test_spk = sorted(test_spk)
        rest = [s for s in genders if s not in set(test_spk)]
        val_spk = _pick_balanced(rest, genders, val_speakers, np.random.default_rng([seed, f]), start=f)
        train, val, test = _parts(speakers, set(test_spk), set(val_spk))
        name = f"fold {f + 1}/{k}: test {','.join(test_spk)}"
        out.append(Fold(name, "speaker-kfold", True, train, val, test))
    return out


def loso(utts: Sequence[Utterance], val_speakers: int = 1, seed: int = 0) -> list[Fold]:
    """Leave one speaker out: one fold per speaker (sorted), validation speakers drawn from the others
    (genders taken in turn, starting gender alternating between folds)."""
    genders = _speaker_genders(utts)
    n = len(genders)
    if n < 2:
        raise ValueError(f"leave-one-speaker-out needs at least 2 speakers, found {n}")
    _check_val_count(val_speakers, n - 1, f"leave-one-speaker-out over {n} speakers")
    speakers = _speaker_list(utts)
    out = []
    for f, s in enumerate(genders):
        rest = [r for r in genders if r != s]
        val_spk = _pick_balanced(rest, genders, val_speakers, np.random.default_rng([seed, f]), start=f)
        train, val, test = _parts(speakers, {s}, set(val_spk))
        out.append(Fold(f"fold {f + 1}/{n}: test {s}", "loso", True, train, val, test))
    return out


def repeated_kfold(labels: Sequence[int], k: int = 10, repeats: int = 5, seed: int = 0,
                   val_fraction: float = 0.1) -> list[Fold]:
    """Stratified k-fold repeated `repeats` times with fresh shuffles (seed 004_d4c4: 10 x 5 = 50
    folds), speaker-dependent. Validation is a stratified `val_fraction` of each training part."""
    from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

    labels = np.asarray(labels)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    out = []
    for i, (rest, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if val_fraction > 0:
            train, val = train_test_split(rest, test_size=val_fraction, stratify=labels[rest],
                                          random_state=seed * 1000 + i)
        else:
            train, val = rest, np.empty(0, dtype=np.int64)
        r, f = divmod(i, k)
        out.append(Fold(f"repeat {r + 1}/{repeats} fold {f + 1}/{k} (speaker-dependent)", "repeated-kfold",
                        False, _idx(train), _idx(val), _idx(test)))
    return out


def holdout_speakers(utts: Sequence[Utterance], n: int = 2, seed: int = 0) -> Fold:
    """Train on all speakers but `n` (gender-balanced) held out for validation; no test part.

    What `voxemo train` uses: the held-out speakers pick the best epoch and give the pipeline a
    speaker-independent figure.
    """
    genders = _speaker_genders(utts)
    _check_val_count(n, len(genders), "holdout")
    val = set(_pick_balanced(genders, genders, n, np.random.default_rng(seed)))
    train, val_idx, _ = _parts(_speaker_list(utts), set(), val)
    return Fold(f"holdout: validation {','.join(sorted(val))}", "holdout", True, train, val_idx, _idx([]))


def check_no_leak(fold: Fold, speakers: Sequence[str] | Sequence[Utterance]) -> None:
    """Raise LeakError if an index sits in two parts, or, for a speaker-independent fold, if a test
    speaker is in train or val or a validation speaker is in train. `speakers[i]` is utterance i's
    speaker (or pass the utterances themselves)."""
    speakers = _speaker_list(speakers)
    parts = {"train": np.asarray(fold.train), "val": np.asarray(fold.val), "test": np.asarray(fold.test)}
    for part, idx in parts.items():
        if idx.size and (idx.min() < 0 or idx.max() >= len(speakers)):
            raise ValueError(f"{fold.name}: {part} indices out of range for {len(speakers)} utterances")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = np.intersect1d(parts[a], parts[b])
        if both.size:
            raise LeakError(f"{fold.name}: {both.size} utterances are in both {a} and {b} "
                            f"(indices {', '.join(map(str, both[:5]))}{', ...' if both.size > 5 else ''})")
    for part, idx in parts.items():
        if np.unique(idx).size != idx.size:
            raise LeakError(f"{fold.name}: {part} lists some utterances twice")
    if not fold.speaker_independent:
        return
    spk = {part: {speakers[i] for i in idx} for part, idx in parts.items()}
    for a, b in (("test", "train"), ("test", "val"), ("val", "train")):
        shared = spk[a] & spk[b]
        if shared:
            raise LeakError(f"{fold.name}: {a} speakers also in {b}: {', '.join(sorted(shared))}")


def make_folds(protocol: str, utts: Sequence[Utterance], labels: Sequence[int] | None, *,
               folds: int | None = None, seed: int = 0, ratios: Sequence[float] | None = None,
               repeats: int | None = None, val_speakers: int | None = None) -> list[Fold]:
    """The folds of a protocol by name (see PROTOCOLS), every one checked with `check_no_leak`.

    Defaults: random 80/10/10; speaker-kfold k=6 with 2 validation speakers; loso with 1 validation
    speaker; repeated-kfold 10 x 5 with 10 % validation. `labels` (one per utterance) are needed by
    the stratified protocols (random, repeated-kfold).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if labels is not None and len(labels) != len(utts):
        raise ValueError(f"{len(labels)} labels for {len(utts)} utterances")
    if protocol in ("random", "repeated-kfold") and labels is None:
        raise ValueError(f"protocol {protocol!r} stratifies by label: pass labels")
    if protocol == "random":
        out = [random_split(labels, ratios or DEFAULT_RATIOS, seed)]
    elif protocol == "speaker-kfold":
        out = speaker_kfold(utts, folds or DEFAULT_FOLDS[protocol], seed,
                            2 if val_speakers is None else val_speakers)
    elif protocol == "loso":
        out = loso(utts, 1 if val_speakers is None else val_speakers, seed)
    else:
        out = repeated_kfold(labels, folds or DEFAULT_FOLDS[protocol], repeats or DEFAULT_REPEATS, seed)
    speakers = _speaker_list(utts)
    for fold in out:
        check_no_leak(fold, speakers)
    return out


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def filter_utterances(utts: Iterable[Utterance], *, channel: str | Iterable[str] | None = None,
                      intensity: str | Iterable[str] | None = None, emotions: Iterable[str] | None = None,
                      gender: str | Iterable[str] | None = None) -> list[Utterance]:
    """The utterances that match every filter given (None = no filter; each takes a value or a
    collection of values). Emotion spellings are mapped to canonical names ("anger" -> "angry").

    Every value must be one the data has: a misspelt or absent one ("hapy", "sog", "femal") raises
    ValueError naming it and listing the values the data has, instead of silently keeping fewer
    clips or classes. (A combination may still match nothing: neutral has no strong intensity.)
    """
    utts = list(utts)
    wanted = None if emotions is None else {canonical_emotion(e) for e in _as_set(emotions)}
    filters = {"channel": _as_set(channel), "intensity": _as_set(intensity), "gender": _as_set(gender), "emotion": wanted}
    for attr, values in filters.items():
        if values is None:
            continue
        have = {getattr(u, attr) for u in utts}
        missing = sorted(map(str, values - have))
        if missing:
            valid = ", ".join(sorted(str(v) for v in have if v is not None)) or "none"
            what = "emotions" if attr == "emotion" else attr
            raise ValueError(f"{what}: {', '.join(map(repr, missing))} not in the data; valid: {valid}")
    return [u for u in utts if all(v is None or getattr(u, a) in v for a, v in filters.items())]


def labels_for(utts: Sequence[Utterance], task: str = "emotion") -> tuple[np.ndarray, list[str]]:
    """Integer labels and class names for a task.

    "emotion": classes in the order of `corpora.EMOTIONS`, restricted to those present (labels from a
    user's folder that are not canonical follow, sorted). "gender": always ["female", "male"];
    ValueError if any utterance's gender is unknown.
    """
    if task == "emotion":
        present = {u.emotion for u in utts}
        classes = [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))
        values = [u.emotion for u in utts]
    elif task == "gender":
        unknown = sum(u.gender not in GENDERS for u in utts)
        if unknown:
            raise ValueError(f"gender task: {unknown} of {len(utts)} utterances have unknown gender; "
                             "filter them out first (filter_utterances(..., gender=('female', 'male')))")
        classes = list(GENDERS)
        values = [u.gender for u in utts]
    else:
        raise ValueError(f"unknown task {task!r}; known: emotion, gender")
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[v] for v in values], dtype=np.int64), classes
