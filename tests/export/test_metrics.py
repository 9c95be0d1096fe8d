"""Retrieval metrics against hand-computed cases."""
import numpy as np
import pytest

from cbmir_train.metrics import (average_precision, exclusion_mask, precision_at_k,
                                 precision_recall_curve, retrieval_metrics)


def test_average_precision_hand_computed():
    # Relevant at ranks 1 and 3 of 4: (1/1 + 2/3) / 2.
    assert average_precision(np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    # Relevant at ranks 2, 3: (1/2 + 2/3) / 2.
    assert average_precision(np.array([0, 1, 1, 0], bool)) == pytest.approx((0.5 + 2 / 3) / 2)
    assert average_precision(np.array([1, 1, 0], bool)) == pytest.approx(1.0)
    assert average_precision(np.array([0, 0, 0], bool)) == 0.0


def test_precision_at_k_counts_short_lists_as_misses():
    relevance = np.array([1, 0, 1], bool)
    assert precision_at_k(relevance, 1) == 1.0
    assert precision_at_k(relevance, 3) == pytest.approx(2 / 3)
    assert precision_at_k(relevance, 10) == pytest.approx(0.2)


def _unit(angles_degrees):
    radians = np.radians(angles_degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_retrieval_metrics_ranks_by_cosine():
    query = _unit([0])
    # Database ordered by similarity to the query: 10, 20, 30, 40 degrees away.
    database = _unit([30, 10, 40, 20])
    labels = ["a", "a", "b", "b"]  # ranking by angle: 10(a) 20(b) 30(a) 40(b)
    result = retrieval_metrics(query, ["a"], database, labels)
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["P@1"] == 1.0
    assert result["P@5"] == pytest.approx(2 / 5)
    assert result["queries"] == 1 and result["database"] == 4


def test_query_never_retrieves_itself():
    vectors = _unit([0, 5, 90])
    labels = ["a", "b", "a"]
    keys = ["x", "y", "z"]
    result = retrieval_metrics(vectors[:1], labels[:1], vectors, labels, keys[:1], keys)
    # Without itself, the ranking is y(b) then z(a): AP = 1/2.
    assert result["mAP"] == pytest.approx(0.5)
    assert result["P@1"] == 0.0


def test_same_patient_left_out_only_when_known():
    mask = exclusion_mask(["q"], ["d1", "d2", "d3"], ["p1"], ["p1", "p2", ""])
    assert mask.tolist() == [[True, False, False]]
    unknown = exclusion_mask(["q"], ["d1", "d2"], [""], ["", ""])
    assert unknown.tolist() == [[False, False]]


def test_patient_exclusion_changes_the_score():
    query = _unit([0])
    database = _unit([1, 30, 60])
    labels = ["a", "b", "a"]
    with_patients = retrieval_metrics(query, ["a"], database, labels, ["q"], ["d1", "d2", "d3"],
                                      ["p1"], ["p1", "p2", "p3"])
    without = retrieval_metrics(query, ["a"], database, labels, ["q"], ["d1", "d2", "d3"])
    assert without["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert with_patients["mAP"] == pytest.approx(0.5)  # only d2(b), d3(a) remain


def test_per_label_and_mean_agree():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = ["a", "b", "c"] * 4
    keys = [str(i) for i in range(12)]
    result = retrieval_metrics(vectors, labels, vectors, labels, keys, keys)
    weighted = sum(v["mAP"] * v["queries"] for v in result["per_label"].values()) / 12
    assert weighted == pytest.approx(result["mAP"])


def test_precision_recall_curve_interpolates():
    recall, precision = precision_recall_curve([np.array([1, 0, 1, 0], bool)], points=3)
    # recall 0 and 0.5 -> best precision at any recall >= r is 1; recall 1 -> 2/3.
    assert recall.tolist() == [0.0, 0.5, 1.0]
    assert precision.tolist() == pytest.approx([1.0, 1.0, 2 / 3])
