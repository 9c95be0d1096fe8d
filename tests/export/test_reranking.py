"""cbmir_train.reranking: aQE and DBA as defined (weights cos^alpha, unit output), and the
evaluation's exclusions respected (the query itself, its own patient)."""
from __future__ import annotations

import numpy as np

from cbmir_train import reranking


def unit(*rows) -> np.ndarray:
    array = np.asarray(rows, np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_query_expansion_adds_the_k_nearest_weighted_by_cosine_to_the_alpha():
    query = unit([1.0, 0.0, 0.0])
    database = unit([1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    cos = np.sqrt(0.5)  # both database rows 0 and 2 are at 45 degrees; row 1 at 90
    expected = query[0] + cos ** 3 * database[0] + cos ** 3 * database[2]
    expanded = reranking.expand_queries(query, database, k=2, alpha=3.0)
    np.testing.assert_allclose(expanded[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_array_equal(reranking.expand_queries(query, database, k=0), query)


def test_excluded_database_items_never_expand_a_query():
    query = unit([1.0, 0.1])
    database = unit([1.0, 0.0], [0.0, 1.0])
    excluded = np.array([[True, False]])  # e.g. the query's own patient
    expanded = reranking.expand_queries(query, database, k=1, alpha=1.0, excluded=excluded)
    cos = float(query[0] @ database[1])
    expected = query[0] + cos * database[1]
    np.testing.assert_allclose(expanded[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_negative_cosines_get_no_weight():
    query = unit([1.0, 0.0])
    database = unit([-1.0, 0.5], [-1.0, -0.2])
    np.testing.assert_allclose(reranking.expand_queries(query, database, k=2), query, atol=1e-6)


def test_database_augmentation_skips_itself_and_its_own_group():
    database = unit([1.0, 0.0, 0.0], [1.0, 0.2, 0.0], [1.0, 0.0, 0.3])
    groups = ["p1", "p1", "p2"]  # rows 0 and 1: one patient
    augmented = reranking.augment_database(database, k=1, alpha=2.0, groups=groups)
    cos = float(database[0] @ database[2])
    expected = database[0] + cos ** 2 * database[2]  # not row 1, though it is nearer
    np.testing.assert_allclose(augmented[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(augmented, axis=1), 1.0, atol=1e-6)
    without_groups = reranking.augment_database(database, k=1, alpha=2.0)
    cos = float(database[0] @ database[1])
    expected = database[0] + cos ** 2 * database[1]
    np.testing.assert_allclose(without_groups[0], expected / np.linalg.norm(expected), atol=1e-6)
