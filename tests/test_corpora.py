"""Every real file name in ../shared/data parses to the right fields and counts."""

from collections import Counter

import pytest

from voxemo.corpora import CorpusError, detect, parse_data_arg, scan, write_manifest
from voxemo.corpora import ravdess

from .conftest import DATA


@pytest.fixture(scope="module")
def speech():
    return scan(DATA / "ravdess_speech")


@pytest.fixture(scope="module")
def song():
    return scan(DATA / "ravdess_song")


@pytest.fixture(scope="module")
def emodb():
    return scan(DATA / "emodb")


def test_ravdess_speech_all_1440(speech):
    assert len(speech) == 1440 and not speech.problems
    assert {u.channel for u in speech} == {"speech"} and {u.corpus for u in speech} == {"ravdess"}
    actors = {u.speaker: u.gender for u in speech}
    assert len(actors) == 24
    assert Counter(actors.values()) == {"female": 12, "male": 12}
    assert actors["ravdess:01"] == "male" and actors["ravdess:24"] == "female"
    # 60 files per actor: neutral 4 (no strong), the seven others 8 each.
    assert set(Counter(u.speaker for u in speech).values()) == {60}
    emotions = Counter(u.emotion for u in speech)
    assert emotions == {"neutral": 96, **{e: 192 for e in ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")}}
    assert Counter(u.intensity for u in speech) == {"normal": 768, "strong": 672}
    assert Counter(u.text for u in speech) == {"01": 720, "02": 720}
    assert Counter(u.repetition for u in speech) == {"01": 720, "02": 720}
    assert {u.modality for u in speech} == {"03"}
    assert all(2.5 < u.duration < 6 for u in speech)


def test_ravdess_fields_of_one_name():
    u = ravdess.parse(DATA / "ravdess_speech" / "Actor_12" / "03-01-06-02-01-02-12.flac")
    assert (u.modality, u.channel, u.emotion, u.intensity, u.text, u.repetition, u.speaker, u.gender) == (
        "03", "speech", "fearful", "strong", "01", "02", "ravdess:12", "female")
    assert "neutral has no strong" in ravdess.parse(DATA / "x" / "03-01-01-02-01-01-01.wav")
    assert "song emotion" in ravdess.parse(DATA / "x" / "03-02-07-01-01-01-01.wav")


def test_ravdess_song_1009(song):
    assert len(song) == 1009 and not song.problems
    assert {u.channel for u in song} == {"song"}
    actors = {u.speaker: u.gender for u in song}
    assert len(actors) == 23 and "ravdess:18" not in actors  # Actor_18 recorded no song
    emotions = Counter(u.emotion for u in song)
    # 1012 in RAVDESS; this copy lacks one neutral (Actor_24), one calm and one happy (Actor_17).
    assert emotions == {"neutral": 91, "calm": 183, "happy": 183, "sad": 184, "angry": 184, "fearful": 184}


def test_speech_and_song_share_speaker_ids(speech, song):
    assert {u.speaker for u in song} < {u.speaker for u in speech}


def test_emodb_535(emodb):
    assert len(emodb) == 535 and not emodb.problems
    speakers = {u.speaker: (u.gender, u.age) for u in emodb}
    assert len(speakers) == 10
    assert Counter(g for g, _ in speakers.values()) == {"female": 5, "male": 5}
    assert speakers["emodb:03"] == ("male", 31) and speakers["emodb:09"] == ("female", 21)
    # Per-emotion counts as the corpus documentation gives them.
    assert Counter(u.emotion for u in emodb) == {
        "angry": 127, "boredom": 81, "disgust": 46, "fearful": 69, "happy": 71, "sad": 62, "neutral": 79}
    assert len({u.text for u in emodb}) == 10


def test_original_format_wav_layouts():
    r = scan(DATA / "original_format" / "ravdess_speech")
    e = scan(DATA / "original_format" / "emodb")
    assert len(r) == 16 and all(u.path.endswith(".wav") for u in r)
    assert len(e) == 7 and len({u.emotion for u in e}) == 7


def test_detect_and_name_prefix():
    assert detect(DATA / "ravdess_speech") == "ravdess"
    assert detect(DATA / "ravdess_song") == "ravdess"
    assert detect(DATA / "emodb") == "emodb"
    assert parse_data_arg("emodb:/data/emodb") == ("emodb", "/data/emodb")
    assert parse_data_arg("/data/emodb") == (None, "/data/emodb")
    with pytest.raises(CorpusError, match="not a folder"):
        detect(DATA / "missing")


def test_misfit_names_are_reported_or_strict(tmp_path):
    import shutil

    for name in ("03-01-05-01-01-01-01.flac", "03-01-05-01-01-02-01.flac"):
        shutil.copy(DATA / "ravdess_speech" / "Actor_01" / name, tmp_path / name)
    shutil.copy(DATA / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.flac", tmp_path / "03-01-09-01-01-01-01.flac")
    m = scan(tmp_path, "ravdess")
    assert len(m) == 2 and len(m.problems) == 1
    assert "03-01-09-01-01-01-01.flac" in m.problems[0].path and "emotion 09" in m.problems[0].reason
    with pytest.raises(CorpusError, match="03-01-09-01-01-01-01.flac"):
        scan(tmp_path, "ravdess", strict=True)
    with pytest.raises(CorpusError, match="no emodb recordings"):
        scan(tmp_path, "emodb")


def test_manifest_csv(tmp_path, emodb):
    import csv

    out = tmp_path / "m.csv"
    write_manifest(emodb, out)
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 535 and rows[0]["speaker"].startswith("emodb:") and rows[0]["emotion"]
