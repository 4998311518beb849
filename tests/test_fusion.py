"""Late fusion (`voxemo.fusion`): each member hears a clip its own way, the fusion weighs their
probabilities, and a saved fusion is used wherever a pipeline is (predict, timeline, ONNX, CLI)."""

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from voxemo.audio import AudioSettings, load_audio
from voxemo.cli import app
from voxemo.corpora import scan
from voxemo.fusion import WEIGHT_GRID, Fusion, choose_weights, load_fusion
from voxemo.pipeline import PipelineError
from voxemo.predict import Predictor, load_model

from .conftest import DATA, link_actors
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


def test_weights_are_chosen_by_the_fusions_ua_on_held_out_clips():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)  # right on class 0, wrong on class 1
    b = np.array([[0.05, 0.95]] * 4 + [[0.1, 0.9]] * 4)  # wrong on class 0, right on class 1
    # class 0 is right when 0.05 + 0.85 w > 0.5 (w > 0.53), class 1 when 0.1 + 0.5 w < 0.5 (w < 0.8):
    # 0.6 and 0.7 get every clip right, and 0.6 is nearer equal weights
    weights, ua = choose_weights([a, b], y)
    assert weights == [0.6, 0.4] and ua == 1.0
    assert choose_weights([b, a], y)[0] == [0.4, 0.6]
    with pytest.raises(ValueError, match="two members"):
        choose_weights([a, b, a], y)
    with pytest.raises(ValueError, match="do not match"):
        choose_weights([a, b[:5]], y)


def test_the_cli_chooses_two_members_weights_on_a_labelled_corpus(members, tmp_path):
    members = [copy.deepcopy(m) for m in members]  # the module's members stay as they are
    with torch.no_grad():  # untrained members answer one class for every clip: let their clips' features decide
        for i, m in enumerate(members, 1):
            last = [x for x in m.model.modules() if isinstance(x, torch.nn.Linear)][-1]
            last.bias.zero_()
            last.weight.mul_(50)
            m.save(tmp_path / f"m{i}")
    held_out = link_actors(tmp_path / "held_out", actors=[2, 3], pattern="03-01-0?-01-01-0?-*")  # 16 clips an actor
    utts = scan(held_out)
    run = CliRunner().invoke
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "f"),
                  "--weights-from", str(held_out)])
    assert r.exit_code == 0, r.output
    assert len(utts) == 32 and "32 clips" in r.output
    chosen = [m["weight"] for m in json.loads((tmp_path / "f" / "fusion.json").read_text())["members"]]

    # by hand: each member hears the clips as `voxemo evaluate` would, every weight of the grid is tried
    decoded = [members[0].audio.decode(u.path) for u in utts]
    probs = [m.hear(decoded) for m in members]
    y = np.array([CLASSES.index(u.emotion) for u in utts])

    def ua(w):
        pred = (w * probs[0] + (1 - w) * probs[1]).argmax(1)
        return np.mean([np.mean(pred[y == k] == k) for k in np.unique(y)])

    best = max(ua(w) for w in WEIGHT_GRID)
    assert len({round(ua(w), 6) for w in WEIGHT_GRID}) > 1  # the weight matters here
    assert chosen[0] in WEIGHT_GRID and ua(chosen[0]) == pytest.approx(best)
    assert chosen[0] + chosen[1] == pytest.approx(1.0)
    assert f"UA {best:.3f}" in r.output

    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "f"),
                  "--weights-from", str(held_out)])
    assert r.exit_code == 2 and "--force" in r.output  # nothing overwritten unasked
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "g"),
                  "--weights", "1,1", "--weights-from", str(held_out)])
    assert r.exit_code == 2 and "not both" in r.output
    r = run(app, ["fuse", str(tmp_path / "m1"), str(tmp_path / "m2"), str(tmp_path / "m1"), "--out",
                  str(tmp_path / "g"), "--weights-from", str(held_out)])
    assert r.exit_code == 2 and "two members" in r.output
