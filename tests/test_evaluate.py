"""Metrics checked against hand-computed values and scikit-learn; aggregation; clip voting."""

import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from voxemo.evaluate import aggregate, classification_metrics

CLASSES = ["angry", "sad", "happy"]


def test_imbalanced_case_by_hand():
    # 8 angry (7 right, 1 called sad), 2 sad (1 right, 1 called angry), no happy in the truth,
    # one happy prediction never made.
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 7 + [1] + [1, 0]
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["wa"] == pytest.approx(8 / 10)  # 7 + 1 right of 10
    assert m["ua"] == pytest.approx((7 / 8 + 1 / 2) / 2)  # 0.6875: happy is absent from the truth
    assert m["wa"] != pytest.approx(m["ua"])
    # angry: P = 7/8, R = 7/8; sad: P = 1/2, R = 1/2; happy neither true nor predicted
    assert m["macro_f1"] == pytest.approx((7 / 8 + 1 / 2) / 2)
    assert m["confusion"] == [[7, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert m["per_class"]["angry"] == {"precision": 7 / 8, "recall": 7 / 8, "f1": pytest.approx(7 / 8), "support": 8}
    assert m["per_class"]["happy"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["classes"] == CLASSES and m["n"] == 10
    json.dumps(m)  # plain Python numbers only


def test_names_as_labels_and_bad_input():
    m = classification_metrics(["sad", "sad", "angry"], ["sad", "angry", "angry"], CLASSES)
    assert m["confusion"][1] == [1, 1, 0] and m["wa"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="calm"):
        classification_metrics(["calm"], ["sad"], CLASSES)
    with pytest.raises(ValueError, match="predictions"):
        classification_metrics([0, 1], [0], CLASSES)


def test_agrees_with_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.choice(5, size=200, p=[0.5, 0.2, 0.15, 0.1, 0.05])
        y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
        m = classification_metrics(y_true, y_pred, list("abcde"))
        assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert m["wa"] == pytest.approx(np.mean(y_true == y_pred))
        assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
        assert np.sum(m["confusion"]) == 200


def test_aggregate_mean_std_and_summed_confusion():
    f1 = classification_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b"])  # all right
    f2 = classification_metrics([0, 0, 1, 1], [0, 1, 1, 0], ["a", "b"])  # half right
    agg = aggregate([f1, f2])
    assert agg["ua"] == {"mean": 0.75, "std": 0.25, "folds": [1.0, 0.5]}  # population std: |1 - 0.5| / 2
    assert agg["wa"]["std"] == pytest.approx(np.std([1.0, 0.5]))
    assert agg["confusion"] == [[3, 1], [1, 3]]
    assert agg["per_class"]["a"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert agg["pooled"]["wa"] == 0.75 and agg["n_folds"] == 2 and agg["classes"] == ["a", "b"]
    with pytest.raises(ValueError, match="classes"):
        aggregate([f1, classification_metrics([0], [0], ["a", "c"])])


def test_collapse_flags_name_one_class_and_a_loss_at_chance():
    import math

    from voxemo.evaluate import collapse_flags

    one_class = [[5, 0, 0], [4, 0, 0], [5, 0, 1]]  # 14 of 15 predictions are class 0
    healthy = [[4, 1, 0], [1, 3, 0], [0, 1, 5]]
    assert collapse_flags(one_class) == ["one class"]
    assert collapse_flags(healthy) == []
    assert collapse_flags(healthy, [math.log(3), 0.99 * math.log(3)]) == ["loss at chance"]
    assert collapse_flags(one_class, [1.2, 0.4]) == ["one class"]
