"""Late fusion (`voxemo.fusion`): each member hears a clip its own way, the fusion weighs their
probabilities, and a saved fusion is used wherever a pipeline is (predict, timeline, ONNX, CLI)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from voxemo.audio import AudioSettings, load_audio
from voxemo.cli import app
from voxemo.fusion import Fusion, load_fusion
from voxemo.pipeline import PipelineError
from voxemo.predict import Predictor, load_model

from .conftest import DATA
from .small_pipeline import ACTOR, CLASSES

SPEECH = sorted(ACTOR.glob("*.flac"))[:3]
LONG = DATA / "emodb" / "wav"


def small(audio: AudioSettings, seed: int, labels=CLASSES):
    """An untrained small voxemo_net pipeline that cuts clips as `audio` says, its normaliser fitted."""
    from voxemo.experiment import Experiment, build

    pipe = build(Experiment(model="voxemo_net", audio=audio, seed=seed,
                            model_overrides={"channels": [8, 16, 16, 16], "gru": 16}), labels)
    waves = torch.from_numpy(np.stack([audio.crop(audio.decode(p)) for p in SPEECH]))
    pipe.normalizer.fit(pipe.frontend(waves))
    pipe.meta.update(corpora=["ravdess"], licence="CC BY-NC-SA 4.0")
    return pipe.eval()


@pytest.fixture(scope="module")
def members(one_torch_thread):
    return [small(AudioSettings(offset=0.5, duration=3.0), 0), small(AudioSettings(offset=0.0, duration=2.0), 1)]


def test_the_fusion_weighs_what_each_member_hears_its_own_way(members):
    a, b = members
    clips = [a.audio.decode(p) for p in SPEECH]
    assert a.audio.windows(clips[0]).shape != b.audio.windows(clips[0]).shape  # two cuts of the same clip
    fused = Fusion(members, [1, 3]).hear(clips)
    np.testing.assert_allclose(fused, 0.25 * a.hear(clips) + 0.75 * b.hear(clips), atol=1e-7)
    np.testing.assert_allclose(fused.sum(1), 1.0, atol=1e-5)
    assert np.abs(fused - a.hear(clips)).max() > 1e-3  # both members count


def test_a_saved_fusion_predicts_and_draws_timelines_as_its_members_weighed(members, tmp_path):
    fusion = Fusion(members, [2, 1])
    fusion.save(tmp_path / "f")
    predictor = load_model(tmp_path / "f")
    assert predictor.labels == CLASSES and len(predictor.members) == 2
    got = predictor.predict(SPEECH[0])
    want = fusion.hear([fusion.audio.decode(SPEECH[0])])[0]
    assert got["label"] == CLASSES[int(np.argmax(want))]
    np.testing.assert_allclose([got["probabilities"][k] for k in CLASSES], want, atol=1e-5)

    x = load_audio(sorted(LONG.glob("*.flac"), key=lambda p: p.stat().st_size)[-1], 16000)  # one long EmoDB clip
    timeline = predictor.timeline(x, 16000, window=2.5, hop=1.0, vad=False)
    alone = [Predictor(m).timeline(x, 16000, window=2.5, hop=1.0, vad=False) for m in members]
    assert len(timeline["windows"]) > 1
    for w, wa, wb in zip(timeline["windows"], *[t["windows"] for t in alone]):
        for k in CLASSES:
            assert w["probabilities"][k] == pytest.approx(2 / 3 * wa["probabilities"][k] + 1 / 3 * wb["probabilities"][k],
                                                          abs=1e-5)


def test_a_fusion_runs_member_by_member_in_onnxruntime(members, tmp_path):
    pytest.importorskip("onnxruntime")
    fusion = Fusion(members)
    torch_p, onnx_p = Predictor(fusion), Predictor(fusion, "onnx")
    for p in SPEECH[:2]:
        a, b = torch_p.predict(p), onnx_p.predict(p)
        assert a["label"] == b["label"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in CLASSES) < 1e-4
    with pytest.raises(PipelineError, match="one ONNX graph per member"):
        Predictor(fusion, "onnx", tmp_path / "any.onnx")


def test_members_that_do_not_fit_together_are_refused(members):
    a, _ = members
    other_labels = small(AudioSettings(offset=0.5, duration=3.0), 2, labels=CLASSES[::-1])
    with pytest.raises(PipelineError, match="share labels in one order"):
        Fusion([a, other_labels])
    other_rate = small(AudioSettings(sample_rate=22050, offset=0.5, duration=3.0), 2)
    with pytest.raises(PipelineError, match="decode a file alike"):
        Fusion([a, other_rate])
    with pytest.raises(PipelineError, match="one positive weight per member"):
        Fusion(members, [1, 0])
    with pytest.raises(PipelineError, match="at least two"):
        Fusion([a])
    with pytest.raises(PipelineError, match="not fusions"):
        Fusion([Fusion(members), a])


def test_a_fusion_folder_is_read_without_running_code_and_checked(members, tmp_path):
    Fusion(members).save(tmp_path / "f")
    desc = json.loads((tmp_path / "f" / "fusion.json").read_text())
    assert desc["members"] == [{"pipeline": "member1", "weight": 0.5}, {"pipeline": "member2", "weight": 0.5}]
    desc["members"][1]["pipeline"] = "../elsewhere"
    (tmp_path / "f" / "fusion.json").write_text(json.dumps(desc))
    with pytest.raises(PipelineError, match="not a file name in the fusion's folder"):
        load_fusion(tmp_path / "f")
    (tmp_path / "f" / "fusion.json").write_text("{not json")
    with pytest.raises(PipelineError, match="not a voxemo fusion description"):
        load_fusion(tmp_path / "f")
    with pytest.raises(FileExistsError):
        Fusion(members).save(tmp_path / "f")  # nothing a user wrote is overwritten unasked


def test_the_cli_fuses_and_refuses_to_export_a_fusion(members, tmp_path):
    for i, m in enumerate(members, 1):
        m.save(tmp_path / f"m{i}")
    run = CliRunner().invoke
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "f"), "--weights", "3,1"])
    assert r.exit_code == 0, r.output
    assert [m["weight"] for m in json.loads((tmp_path / "f" / "fusion.json").read_text())["members"]] == [0.75, 0.25]
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "--force" in r.output
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "g"), "--weights", "1,x"])
    assert r.exit_code == 2 and "--weights" in r.output
    r = run(app, ["export", str(tmp_path / "f"), "--onnx", str(tmp_path / "f.onnx")])
    assert r.exit_code == 2 and "is a fusion" in r.output and not (tmp_path / "f.onnx").exists()
    r = run(app, ["predict", str(SPEECH[0]), "--model", str(tmp_path / "f"), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(next(line for line in r.output.splitlines() if line.startswith("{")))["label"] in CLASSES
