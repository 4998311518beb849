"""TESS, SAVEE, CREMA-D and a user's own folders, as a user's copy lays them out.

These corpora are not in ../shared/data, so each test builds a small tree in tmp_path with the
corpus's real file names, every file holding the same half second of real speech (cut from an EmoDB
original), and checks what `scan` and `detect` make of it.
"""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from voxemo.audio import load_audio
from voxemo.corpora import CorpusError, detect, scan

from .conftest import DATA

SR = 16000
SOURCE = DATA / "original_format" / "emodb" / "wav" / "03a01Wa.wav"  # 16 kHz mono WAV
PCM16_STEP = 1 / 32768  # one step of 16-bit PCM, the subtype soundfile writes by default


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """0.5 s of real speech, float32 at 16 kHz (from 0.5 s to 1 s of the EmoDB recording)."""
    x, sr = sf.read(SOURCE, dtype="float32")
    assert sr == SR and x.ndim == 1
    return x[SR // 2 : SR]


def put(root: Path, rel: str, x: np.ndarray, sr: int = SR, **kw) -> Path:
    """Write `x` at `root/rel` (format from the suffix unless `format=` is given), making folders."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, **kw)
    return path


def by_name(manifest) -> dict:
    return {Path(u.path).name: u for u in manifest}


# --- TESS ----------------------------------------------------------------------------------------


def test_tess_names_quirks_and_odd_files(tmp_path, clip):
    root = tmp_path / "TESS Toronto emotional speech set data"
    put(root, "OAF_angry/OAF_back_angry.wav", clip)
    put(root, "OAF_Fear/OAF_back_fear.wav", clip)
    put(root, "YAF_pleasant_surprised/YAF_back_ps.wav", clip)
    put(root, "OAF_Pleasant_surprise/OAF_bean_pleasant_surprise.wav", clip)
    put(root, "OAF_neutral/OA_bite_neutral.wav", clip)  # the public copy's missing F
    # AIFF content under a .wav name, as two files of the public copy.
    aiff = put(root, "YAF_sad/YAF_dog_sad.aiff", clip, format="AIFF")
    aiff = aiff.rename(aiff.with_suffix(".wav"))
    # A 96 kHz file among the 24.4 kHz ones.
    hires = put(root, "YAF_happy/YAF_date_happy.wav", soxr.resample(clip, SR, 96000), 96000)
    (root / "README.txt").write_text("Toronto emotional speech set\n")

    m = scan(root)
    assert not m.problems and len(m) == 7
    assert by_name(scan(root, "tess")) == by_name(m)
    assert detect(root) == "tess"
    u = by_name(m)
    fields = {name: (x.speaker, x.emotion, x.text) for name, x in u.items()}
    assert fields == {
        "OAF_back_angry.wav": ("tess:OAF", "angry", "back"),
        "OAF_back_fear.wav": ("tess:OAF", "fearful", "back"),
        "YAF_back_ps.wav": ("tess:YAF", "surprised", "back"),
        "OAF_bean_pleasant_surprise.wav": ("tess:OAF", "surprised", "bean"),
        "OA_bite_neutral.wav": ("tess:OAF", "neutral", "bite"),
        "YAF_dog_sad.wav": ("tess:YAF", "sad", "dog"),
        "YAF_date_happy.wav": ("tess:YAF", "happy", "date"),
    }
    assert {x.gender for x in m} == {"female"} and {x.corpus for x in m} == {"tess"}
    assert {x.speaker: x.age for x in m} == {"tess:OAF": 64, "tess:YAF": 26}
    assert all(x.duration == pytest.approx(0.5) for x in m)

    # The AIFF-in-.wav file decodes by content; the 96 kHz one comes out at 16 kHz, 0.5 s long.
    assert sf.info(aiff).format == "AIFF"
    x = load_audio(aiff, SR)
    assert x.shape == clip.shape
    np.testing.assert_allclose(x, clip, atol=PCM16_STEP)
    y = load_audio(hires, SR)
    assert y.shape == (SR // 2,)
    assert np.corrcoef(y, clip)[0, 1] > 0.99


def test_non_audio_files_ignored_or_reported(tmp_path, clip):
    root = tmp_path / "tess"
    put(root, "OAF_angry/OAF_back_angry.wav", clip)
    put(root, "OAF_angry/OAF_bar_angry.wav", clip)
    (root / "README.txt").write_text("notes")
    (root / "OAF_angry" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # macOS zips: AppleDouble "._" files and a __MACOSX folder (hidden names: skipped).
    (root / "OAF_angry" / "._OAF_back_angry.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "__MACOSX" / "OAF_angry").mkdir(parents=True)
    (root / "__MACOSX" / "OAF_angry" / "._OAF_bar_angry.wav").write_bytes(b"\x00\x05\x16\x07")
    # Text under an audio name, and a WAV with a header but no samples.
    fake = root / "OAF_angry" / "OAF_base_angry.wav"
    fake.write_text("<html>404 Not Found</html>")
    put(root, "OAF_angry/OAF_bath_angry.wav", np.zeros(0, np.float32))

    m = scan(root)
    assert sorted(by_name(m)) == ["OAF_back_angry.wav", "OAF_bar_angry.wav"]
    reasons = {Path(p.path).name: p.reason for p in m.problems}
    assert set(reasons) == {"OAF_base_angry.wav", "OAF_bath_angry.wav"}
    assert "not an audio file" in reasons["OAF_base_angry.wav"]
    assert "zero-length" in reasons["OAF_bath_angry.wav"]
    assert str(fake) in [p.path for p in m.problems]


# --- SAVEE ---------------------------------------------------------------------------------------


def test_savee_original_and_flat_layouts(tmp_path, clip):
    root = tmp_path / "AudioData"
    for rel in ("DC/a01.wav", "JE/f03.wav", "JE/h04.wav", "JK/sa03.wav", "KL/n05.wav", "KL/su15.wav", "DC_d02.wav"):
        put(root, rel, clip)
    (root / "Info.txt").write_text("SAVEE")

    m = scan(root)
    assert not m.problems and len(m) == 7
    assert detect(root) == "savee"
    fields = {Path(u.path).relative_to(root).as_posix(): (u.speaker, u.emotion, u.text) for u in m}
    assert fields == {
        "DC/a01.wav": ("savee:DC", "angry", "a01"),
        "DC_d02.wav": ("savee:DC", "disgust", "d02"),  # speaker from the prefix
        "JE/f03.wav": ("savee:JE", "fearful", "f03"),
        "JE/h04.wav": ("savee:JE", "happy", "h04"),
        "JK/sa03.wav": ("savee:JK", "sad", "sa03"),
        "KL/n05.wav": ("savee:KL", "neutral", "n05"),
        "KL/su15.wav": ("savee:KL", "surprised", "su15"),
    }
    assert {u.gender for u in m} == {"male"} and {u.corpus for u in m} == {"savee"}

    flat = tmp_path / "savee_flat"
    for name in ("DC_a01.wav", "JE_sa02.wav", "KL_su15.wav"):
        put(flat, name, clip)
    assert detect(flat) == "savee"
    assert {(u.speaker, u.emotion) for u in scan(flat)} == {
        ("savee:DC", "angry"), ("savee:JE", "sad"), ("savee:KL", "surprised")}


def test_savee_bad_speaker_folder_is_reported_or_strict(tmp_path, clip):
    root = tmp_path / "AudioData"
    put(root, "DC/a01.wav", clip)
    put(root, "JK/n02.wav", clip)
    bad = put(root, "XX/a01.wav", clip)

    assert detect(root) == "savee"
    m = scan(root)
    assert len(m) == 2 and len(m.problems) == 1
    assert m.problems[0].path == str(bad)
    assert "'XX'" in m.problems[0].reason and "DC, JE, JK, KL" in m.problems[0].reason
    with pytest.raises(CorpusError, match="XX"):
        scan(root, strict=True)


# --- CREMA-D -------------------------------------------------------------------------------------


def cremad_tree(root: Path, clip) -> None:
    put(root, "1001_DFA_ANG_XX.wav", clip)
    put(root, "1002_IEO_HAP_HI.wav", clip)
    put(root, "1091_TIE_SAD_LO.wav", clip)  # an actor the demographics table below lacks
    put(root, "1040_ITH_SAD_X.wav", clip)  # the public copy's one-letter level
    (root / "1076_MTI_NEU_XX.wav").write_bytes(b"")  # zero bytes, as in the public copy


def write_demographics(path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        w.writerow([1001, 51, "Male", "Caucasian", "Not Hispanic"])
        w.writerow([1002, 21, "Female", "Caucasian", "Not Hispanic"])
        w.writerow([1040, 32, "Male", "Caucasian", "Not Hispanic"])


def test_cremad_without_demographics(tmp_path, clip):
    root = tmp_path / "AudioWAV"
    cremad_tree(root, clip)

    assert detect(root) == "cremad"
    m = scan(root)
    assert {u.corpus for u in m} == {"cremad"}
    u = by_name(m)
    assert sorted(u) == ["1001_DFA_ANG_XX.wav", "1002_IEO_HAP_HI.wav", "1040_ITH_SAD_X.wav", "1091_TIE_SAD_LO.wav"]
    assert (u["1001_DFA_ANG_XX.wav"].speaker, u["1001_DFA_ANG_XX.wav"].emotion,
            u["1001_DFA_ANG_XX.wav"].intensity, u["1001_DFA_ANG_XX.wav"].text) == (
        "cremad:1001", "angry", "unspecified", "DFA")
    assert (u["1002_IEO_HAP_HI.wav"].emotion, u["1002_IEO_HAP_HI.wav"].intensity) == ("happy", "high")
    assert u["1040_ITH_SAD_X.wav"].intensity == "unspecified"
    assert u["1091_TIE_SAD_LO.wav"].intensity == "low"
    assert {x.gender for x in m} == {"unknown"} and {x.age for x in m} == {None}
    # The zero-byte file is a problem, named, not a crash.
    assert [(Path(p.path).name, p.reason) for p in m.problems] == [("1076_MTI_NEU_XX.wav", "empty file (0 bytes)")]


@pytest.mark.parametrize("where", ["corpus folder", "its parent"])
def test_cremad_gender_and_age_from_demographics(tmp_path, clip, where):
    top = tmp_path / "CREMA-D"
    root = top / "AudioWAV"
    cremad_tree(root, clip)
    write_demographics((root if where == "corpus folder" else top) / "VideoDemographics.csv")

    assert detect(root) == "cremad"
    m = scan(root)
    u = by_name(m)
    assert (u["1001_DFA_ANG_XX.wav"].gender, u["1001_DFA_ANG_XX.wav"].age) == ("male", 51)
    assert (u["1002_IEO_HAP_HI.wav"].gender, u["1002_IEO_HAP_HI.wav"].age) == ("female", 21)
    assert (u["1091_TIE_SAD_LO.wav"].gender, u["1091_TIE_SAD_LO.wav"].age) == ("unknown", None)
    assert len(m.problems) == 1


# --- A user's own folders ------------------------------------------------------------------------


def test_own_label_folders(tmp_path, clip):
    root = tmp_path / "my_recordings"
    put(root, "Anger/x.wav", clip)
    put(root, "happy/spk1/y.wav", clip)
    put(root, "happy/spk2/take2.flac", clip)
    put(root, "Excited/z.wav", clip)

    assert detect(root) == "folder"
    m = scan(root, "folder")
    assert not m.problems
    fields = {Path(u.path).name: (u.emotion, u.speaker, u.gender) for u in m}
    assert fields == {
        "x.wav": ("angry", "folder:unknown", "unknown"),
        "y.wav": ("happy", "folder:spk1", "unknown"),
        "take2.flac": ("happy", "folder:spk2", "unknown"),
        "z.wav": ("excited", "folder:unknown", "unknown"),  # unknown label: kept, lower-cased
    }
    assert by_name(scan(root)) == by_name(m)


def test_own_labels_csv(tmp_path, clip):
    root = tmp_path / "my_corpus"
    a = put(root, "audio/a.wav", clip)
    b = put(root, "audio/sub/b.flac", clip)
    table = root / "labels.csv"
    table.write_text(
        "path,label,speaker,gender\n"
        "audio/a.wav,Anger,s1,F\n"
        "audio/sub/b.flac,sad,s2,male\n"
        "audio/missing.wav,happy,s1,F\n"
    )

    assert detect(root) == "folder"
    m = scan(root)
    assert {u.path: (u.emotion, u.speaker, u.gender) for u in m} == {
        str(a.resolve()): ("angry", "folder:s1", "female"),
        str(b.resolve()): ("sad", "folder:s2", "male"),
    }
    assert len(m.problems) == 1
    p = m.problems[0]
    assert p.path == str((root / "audio" / "missing.wav").resolve())
    assert "file not found" in p.reason and "labels.csv, line 4" in p.reason
    # The CSV itself can be given as the root, with or without naming the corpus.
    assert by_name(scan(table, "folder")) == by_name(m)
    assert by_name(scan(table)) == by_name(m)


def test_own_csv_without_label_column(tmp_path, clip):
    root = tmp_path / "my_corpus"
    put(root, "audio/a.wav", clip)
    (root / "labels.csv").write_text("path,emotion\naudio/a.wav,angry\n")
    with pytest.raises(CorpusError, match=r"labels.csv: a labels CSV needs a header with the columns path,label.*'emotion'"):
        scan(root)


# --- Nothing fits --------------------------------------------------------------------------------


def test_unknown_layout(tmp_path, clip):
    root = tmp_path / "downloads"
    put(root, "random_name.wav", clip)
    put(root, "another one.wav", clip)
    (root / "notes.txt").write_text("?")
    with pytest.raises(CorpusError, match="unknown corpus layout"):
        detect(root)
    with pytest.raises(CorpusError, match="unknown corpus layout"):
        scan(root)
    (root / "empty").mkdir()
    with pytest.raises(CorpusError, match="no audio files found"):
        detect(root / "empty")


def test_cremad_wav_and_mp3_copies_count_once(tmp_path, clip):
    root = tmp_path / "CREMA-D"
    put(root, "AudioWAV/1001_DFA_ANG_XX.wav", clip)
    sf.write(str(root / "AudioWAV" / "1001_DFA_HAP_XX.wav"), clip, 16000)
    (root / "AudioMP3").mkdir()
    sf.write(str(root / "AudioMP3" / "1001_DFA_ANG_XX.flac"), clip, 16000)
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    m = scan(root, "cremad")
    assert sorted(Path(u.path).name for u in m) == ["1001_DFA_ANG_XX.wav", "1001_DFA_HAP_XX.wav"]
    assert len(m.problems) == 1 and "another copy" in m.problems[0].reason
    assert detect(root) == "cremad"  # the demographics CSV is not a labels CSV
