"""Evaluation protocols on the real RAVDESS speech and EmoDB manifests: partitions, speaker
disjointness, gender balance, stratification, determinism, the leak guard, filters and labels."""

from collections import Counter

import numpy as np
import pytest

from voxemo.corpora import scan
from voxemo.splits import (
    Fold, LeakError, check_no_leak, filter_utterances, labels_for, loso, make_folds, random_split,
    repeated_kfold, speaker_kfold,
)

from .conftest import DATA

SIX = ("neutral", "calm", "happy", "sad", "angry", "fearful")


@pytest.fixture(scope="module")
def ravdess():
    return scan(DATA / "ravdess_speech")


@pytest.fixture(scope="module")
def emodb():
    return scan(DATA / "emodb")


def speakers_of(utts, idx):
    return {utts[i].speaker for i in idx}


def assert_partition(fold, n):
    parts = np.concatenate([fold.train, fold.val, fold.test])
    assert len(parts) == n and np.array_equal(np.sort(parts), np.arange(n)), fold.name


def test_speaker_kfold_on_ravdess(ravdess):
    y, _ = labels_for(ravdess)
    folds = make_folds("speaker-kfold", ravdess, y)
    assert len(folds) == 6
    seen = []
    for f, fold in enumerate(folds):
        assert fold.protocol == "speaker-kfold" and fold.speaker_independent
        assert_partition(fold, len(ravdess))
        test, val, train = (speakers_of(ravdess, getattr(fold, p)) for p in ("test", "val", "train"))
        assert len(test) == 4 and len(val) == 2 and len(train) == 18
        assert not (test & train) and not (test & val) and not (val & train)
        genders = {s: "male" if int(s.split(":")[1]) % 2 else "female" for s in test | val}
        assert Counter(genders[s] for s in test) == {"female": 2, "male": 2}, fold.name
        assert Counter(genders[s] for s in val) == {"female": 1, "male": 1}, fold.name
        assert fold.name.startswith(f"fold {f + 1}/6: test ") and all(s in fold.name for s in test)
        seen += sorted(test)
    assert sorted(seen) == sorted({u.speaker for u in ravdess})  # every actor tested exactly once


def test_speaker_kfold_is_deterministic_and_seeded(ravdess):
    def tests(seed):
        return [tuple(sorted(speakers_of(ravdess, f.test))) for f in speaker_kfold(ravdess, seed=seed)]

    a, b = speaker_kfold(ravdess, seed=3), speaker_kfold(ravdess, seed=3)
    for fa, fb in zip(a, b):
        assert fa.name == fb.name
        for part in ("train", "val", "test"):
            assert np.array_equal(getattr(fa, part), getattr(fb, part))
    assert tests(0) != tests(1)


def test_speaker_kfold_uneven_genders(emodb):
    # EmoDB: 5 F + 5 M speakers; k=3 cannot balance exactly: 2/2/1 of each gender, 4/3/3 speakers.
    folds = speaker_kfold(emodb, k=3, val_speakers=2)
    assert sorted(len(speakers_of(emodb, f.test)) for f in folds) == [3, 3, 4]
    for f in folds:
        check_no_leak(f, emodb)
        per_gender = Counter(g for s, g in {(emodb[i].speaker, emodb[i].gender) for i in f.test})
        assert set(per_gender) == {"female", "male"} and max(per_gender.values()) <= 2
    with pytest.raises(ValueError, match="k"):
        speaker_kfold(emodb, k=11)
    with pytest.raises(ValueError, match="too few"):
        speaker_kfold(emodb, k=2, val_speakers=5)


def test_loso_on_emodb(emodb):
    folds = make_folds("loso", emodb, None)
    assert len(folds) == 10
    assert sorted(next(iter(speakers_of(emodb, f.test))) for f in folds) == sorted({u.speaker for u in emodb})
    for f in folds:
        assert_partition(f, len(emodb))
        test, val, train = (speakers_of(emodb, getattr(f, p)) for p in ("test", "val", "train"))
        assert len(test) == 1 and len(val) == 1 and len(train) == 8
        assert not (test | val) & train and not test & val
    # the single validation speaker alternates between genders from fold to fold
    val_genders = [emodb[f.val[0]].gender for f in folds]
    assert Counter(val_genders) == {"female": 5, "male": 5}
    assert len(loso(emodb, val_speakers=2)[0].val) > 0


def test_leak_guard_raises_on_hand_made_folds(ravdess):
    spk = [u.speaker for u in ravdess]
    a01 = np.array([i for i, s in enumerate(spk) if s == "ravdess:01"])
    a02 = np.array([i for i, s in enumerate(spk) if s == "ravdess:02"])
    others = np.array([i for i, s in enumerate(spk) if s not in ("ravdess:01", "ravdess:02")])
    # one file of the test actor slipped into training
    leaking = Fold("leaky", "speaker-kfold", True, np.append(others, a01[0]), a02, a01[1:])
    with pytest.raises(LeakError, match="ravdess:01"):
        check_no_leak(leaking, spk)
    # a validation actor also trains
    with pytest.raises(LeakError, match="ravdess:02"):
        check_no_leak(Fold("leaky val", "loso", True, np.append(others, a02[0]), a02[1:], a01), spk)
    # the same clip in two parts, even when the protocol is speaker-dependent
    with pytest.raises(LeakError, match="both"):
        check_no_leak(Fold("dup", "random", False, others, a02, np.append(a01, others[0])), spk)
    assert issubclass(LeakError, ValueError)
    # a clean fold passes; a speaker-dependent one may share speakers
    check_no_leak(Fold("clean", "loso", True, others, a02, a01), spk)
    check_no_leak(Fold("mixed", "random", False, np.append(others, a01[:5]), a02, a01[5:]), spk)


def test_random_split_stratified(ravdess):
    y, classes = labels_for(ravdess)
    fold = make_folds("random", ravdess, y, seed=1)[0]
    assert fold.protocol == "random" and not fold.speaker_independent and "speaker-dependent" in fold.name
    assert_partition(fold, len(ravdess))
    n = len(ravdess)
    assert (len(fold.train), len(fold.val), len(fold.test)) == pytest.approx((0.8 * n, 0.1 * n, 0.1 * n), abs=1)
    full = np.bincount(y) / n
    for part in (fold.train, fold.val, fold.test):
        assert np.allclose(np.bincount(y[part], minlength=len(classes)) / len(part), full, atol=0.01)
    again = random_split(y, seed=1)
    assert np.array_equal(again.test, fold.test) and not np.array_equal(random_split(y, seed=2).test, fold.test)
    two = random_split(y, ratios=(0.75, 0.25))
    assert len(two.val) == 0 and len(two.test) == n // 4
    with pytest.raises(ValueError, match="ratios"):
        random_split(y, ratios=(0.8, 0.3, 0.1))


def test_repeated_kfold_50_stratified_folds(emodb):
    y, classes = labels_for(emodb)
    folds = make_folds("repeated-kfold", emodb, y)
    assert len(folds) == 50 and not any(f.speaker_independent for f in folds)
    full = np.bincount(y, minlength=len(classes))
    for r in range(5):
        tests = np.concatenate([f.test for f in folds[10 * r: 10 * r + 10]])
        assert np.array_equal(np.sort(tests), np.arange(len(y)))  # each repeat tests every clip once
    for f in folds:
        assert_partition(f, len(y))
        counts = np.bincount(y[f.test], minlength=len(classes))
        assert np.all(np.abs(counts - full / 10) <= 1), f.name  # stratified to within one clip per class
        val = np.bincount(y[f.val], minlength=len(classes)) / len(f.val)
        assert np.allclose(val, full / len(y), atol=0.03)
        assert len(f.val) == pytest.approx(0.1 * (len(f.train) + len(f.val)), abs=1)
    assert not np.array_equal(folds[0].test, folds[10].test)  # repeats reshuffle
    again = repeated_kfold(y, seed=0)
    assert all(np.array_equal(a.val, b.val) for a, b in zip(folds, again))


def test_make_folds_rejects_unknown_protocol(ravdess):
    with pytest.raises(ValueError, match="speaker-kfold"):
        make_folds("kfold", ravdess, None)
    with pytest.raises(ValueError, match="labels"):
        make_folds("random", ravdess, None)


def test_filters_and_labels(ravdess, emodb):
    strong = filter_utterances(ravdess, intensity="strong")
    assert len(strong) == 672 and {u.intensity for u in strong} == {"strong"}
    six = filter_utterances(ravdess, emotions=SIX)
    assert len(six) == 96 + 5 * 192
    assert len(filter_utterances(ravdess, emotions=SIX, intensity="strong")) == 5 * 96  # neutral has no strong
    assert len(filter_utterances(ravdess, emotions=["anger", "sadness"])) == 2 * 192  # spellings map
    assert len(filter_utterances(ravdess, gender="female", channel="speech")) == 720
    with pytest.raises(ValueError, match=r"channel: 'song' not in the data; valid: speech"):
        filter_utterances(ravdess, channel="song")  # a speech-only folder

    y, classes = labels_for(six)
    assert classes == list(SIX)  # canonical order, not alphabetical
    assert Counter(classes[i] for i in y) == Counter(u.emotion for u in six)
    y, classes = labels_for(emodb)
    assert classes == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom"]
    y, classes = labels_for(emodb, "gender")
    assert classes == ["female", "male"] and np.bincount(y).sum() == 535
    assert all(classes[i] == u.gender for i, u in zip(y, emodb))


def test_filter_values_are_checked(ravdess, emodb):
    """A misspelt filter value is named with the valid ones, never silently dropped (issue 13.4)."""
    with pytest.raises(ValueError, match=r"emotions: .hapy. not in the data; valid: angry, calm, disgust"):
        filter_utterances(ravdess, emotions=["angry", "sad", "hapy"])
    with pytest.raises(ValueError, match=r"channel: 'sog' not in the data; valid: speech"):
        filter_utterances(ravdess, channel="sog")
    with pytest.raises(ValueError, match=r"gender: 'femal' not in the data; valid: female, male"):
        filter_utterances(emodb, gender="femal")
    with pytest.raises(ValueError, match=r"emotions: 'calm' not in the data; valid: angry, boredom"):
        filter_utterances(emodb, emotions=["calm"])  # EmoDB has no calm


def test_gender_labels_refuse_unknown(ravdess):
    import dataclasses

    mixed = list(ravdess[:10]) + [dataclasses.replace(u, gender="unknown") for u in ravdess[10:13]]
    with pytest.raises(ValueError, match="3 of 13"):
        labels_for(mixed, "gender")
    with pytest.raises(ValueError, match="task"):
        labels_for(mixed, "speaker")
