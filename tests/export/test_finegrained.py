"""Pure logic of the fine-grained (within-type) retrieval measures."""
import numpy as np
import pytest

from cbmir_train import finegrained as fg


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_copy_ranks_counts_better_originals():
    originals = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    copies = unit([[0.9, 0.1, 0], [0.8, 0.2, 0.1], [0, 0.1, 1]])
    # copy 0 -> original 0 first; copy 1's own original (1) is beaten by original 0; copy 2 first.
    assert fg.copy_ranks(copies, originals, np.array([0, 1, 2])).tolist() == [1, 2, 1]


def test_copy_ranks_ties_count_against_the_copy():
    collapsed = unit([[1, 0], [1, 0], [1, 0]])
    assert fg.copy_ranks(collapsed, collapsed, np.arange(3)).tolist() == [3, 3, 3]


def test_summarise_ranks():
    summary = fg.summarise_ranks(np.array([1, 1, 3, 10]))
    assert summary["top1"] == 0.5 and summary["top5"] == 0.75
    assert summary["median_rank"] == 2.0
    assert summary["mrr"] == pytest.approx((1 + 1 + 1 / 3 + 0.1) / 4)


def test_own_patient_first():
    vectors = unit([[1, 0], [0.95, 0.05], [0.9, 0.3], [0, 1], [0.1, 1]])
    patients = ["a", "b", "a", "c", "c"]
    # query 0 (a): best other is 1 (b) -> miss; query 3 (c): best other is 4 (c) -> hit.
    result = fg.own_patient_first(vectors, patients, [0, 3], [0, 1, 2, 3, 4])
    assert result == {"queries": 2, "rate": 0.5}
    # a patient with no other slice among the candidates is not counted
    assert fg.own_patient_first(vectors, patients, [1], [0, 1, 2, 3, 4])["queries"] == 0


def test_own_patient_first_without_ids():
    result = fg.own_patient_first(unit([[1, 0], [0, 1]]), ["", ""], [0], [0, 1])
    assert result["rate"] is None and "patient" in result["reason"]


def test_score_spread():
    queries = unit([[1, 0, 0]])
    database = unit([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0]])
    spread = fg.score_spread(queries, ["x"], database, ["x", "x", "y"], top=2)
    assert spread["median_same_type_cosine"] == pytest.approx(0.9)
    assert spread["median_other_type_cosine"] == pytest.approx(0.0)
    assert spread["median_top10_span"] == pytest.approx(0.2)


def test_parameters_are_seeded_and_in_range():
    first = fg.reacquisition_parameters(50, seed=3)
    assert first == fg.reacquisition_parameters(50, seed=3)
    assert first != fg.reacquisition_parameters(50, seed=4)
    for p in first:
        assert 4 <= abs(p["angle"]) <= 8
        assert 0.92 <= p["scale"] <= 0.97
        assert all(abs(s) <= 0.03 for s in p["shift"])
        assert 0.8 <= p["gamma"] <= 1.2


def square(size=100, half=30, value=200.0):
    image = np.zeros((size, size), np.float32)
    image[50 - half:50 + half, 50 - half:50 + half] = value
    return image


def test_perturbation_shrinks_rotates_and_keeps_range():
    image = square()
    out = fg.perturb_reacquisition(image, angle=0.0, scale=0.9, shift=(0.0, 0.0), gamma=1.0)
    area = (out > 100).sum() / (image > 100).sum()
    assert area == pytest.approx(0.81, abs=0.05)  # 10 % smaller per side
    assert out.min() >= 0 and out.max() <= 200.0 + 1e-3
    turned = fg.perturb_reacquisition(image, angle=8.0, scale=1.0, shift=(0.0, 0.0), gamma=1.0)
    corner_row = np.nonzero(turned[:, 20:80].max(axis=1) > 100)[0]
    assert corner_row[0] < 20  # a rotated square's corner sticks out above the original edge


def test_perturbation_shift_and_gamma():
    image = square()
    moved = fg.perturb_reacquisition(image, angle=0.0, scale=1.0, shift=(0.1, 0.0), gamma=1.0)
    columns = np.nonzero(moved.max(axis=0) > 100)[0]
    assert columns[0] == pytest.approx(30, abs=1)  # 20 + 10 % of 100 px
    ramp = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (100, 1))
    darker = fg.perturb_reacquisition(ramp, angle=0.0, scale=1.0, shift=(0.0, 0.0), gamma=1.2)
    assert darker[50, 50] == pytest.approx(ramp[50, 50] ** 1.2, abs=0.01)
