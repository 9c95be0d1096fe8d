"""Score -> percentile in the archive's own scores (percentile.py), without Orthanc."""
import numpy as np
import pytest

from cbmir.service.config import Config
from cbmir.vectors.index import VectorIndex
from cbmir.vectors.percentile import ReferenceSample, percentiles
from cbmir.vectors.search import Params, find_similar


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def index_without_rebuilds(directory) -> VectorIndex:
    shipped = Config()
    return VectorIndex(directory, trees=shipped.annoy_trees, search_k=shipped.annoy_search_k,
                       candidates=shipped.candidates, rebuild_threshold=10**9)


class FakeStore:
    """What VectorIndex.rebuild and find_similar read from the store."""

    def __init__(self, vectors, first_id=1):
        self.ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
        self.matrix = np.asarray(vectors, dtype=np.float32)

    def vectors(self, generation):
        return self.ids, self.matrix

    def metadata(self, ids):
        return {int(i): {"instance": f"inst-{int(i)}", "frame": 0, "sop_uid": f"1.{int(i)}",
                         "study_uid": f"2.{int(i)}", "series_uid": f"3.{int(i)}",
                         "patient_id": f"P{int(i)}", "study_date": "", "series_description": "",
                         "modality": "MR", "label": "", "orthanc_study": f"s-{int(i)}"}
                for i in ids if int(i) in set(self.ids.tolist())}


def test_the_share_of_the_sample_strictly_below_each_score():
    # cosines of the query (x axis) with the sample rows: 1, 0, -1, cos(60) = 0.5
    sample = unit([[1, 0], [0, 1], [-1, 0], [0.5, np.sqrt(3) / 2]])
    got = percentiles(sample, np.array([1.0, 0.0]), [1.0, 0.75, 0.5, 0.0, -1.0, -2.0])
    assert got.tolist() == [75.0, 75.0, 50.0, 25.0, 0.0, 0.0]


def test_percentiles_are_monotone_in_the_score_and_bounded():
    rng = np.random.default_rng(0)
    sample = unit(rng.normal(size=(3000, 16)))
    query = rng.normal(size=16)
    scores = np.sort(rng.uniform(-1.2, 1.2, 500))
    got = percentiles(sample, query, scores)
    assert np.all(np.diff(got) >= 0)
    assert got.min() == 0.0 and got.max() == 100.0
    # the empirical distribution: half the sample lies below the median cosine
    median = float(np.median(sample @ (query / np.linalg.norm(query))))
    assert percentiles(sample, query, [median])[0] == pytest.approx(50.0, abs=0.05)


def test_floored_so_that_only_beating_every_sampled_image_reads_100():
    sample = unit(np.eye(8)[:, :8] + 0.01)
    query = sample[0]
    best_other = float(np.sort(sample @ query)[-2])
    assert percentiles(sample, query, [best_other + 1e-4])[0] == 87.5  # 7 of 8, not rounded up
    assert percentiles(sample[1:], query, [best_other + 1e-4])[0] == 100.0


def test_the_query_itself_can_be_left_out():
    sample = unit([[1, 0], [0, 1], [-1, 0], [0.6, 0.8]])
    exclude = np.array([True, False, False, False])  # row 0 is the query image
    assert percentiles(sample, sample[0], [0.7], exclude)[0] == pytest.approx(100.0)
    assert percentiles(sample, sample[0], [0.7])[0] == pytest.approx(75.0)


def test_an_empty_sample_gives_no_percentile():
    assert np.isnan(percentiles(np.zeros((0, 4), np.float32), np.ones(4), [0.5])).all()


def test_the_sample_is_every_vector_of_a_small_index_and_follows_it(tmp_path):
    rng = np.random.default_rng(1)
    index = index_without_rebuilds(tmp_path)
    index.add(np.arange(1, 101), unit(rng.normal(size=(100, 8))))
    ids, matrix = index.reference.current()
    assert sorted(ids.tolist()) == list(range(1, 101)) and matrix.shape == (100, 8)
    index.add([500], unit(rng.normal(size=(1, 8))))  # smaller than the sample: any change re-draws
    assert 500 in index.reference.current()[0]
    index.remove([500, 7])
    assert not {500, 7} & set(index.reference.current()[0].tolist())


def test_a_large_index_is_sampled_and_redrawn_on_rebuild_or_growth(tmp_path):
    rng = np.random.default_rng(2)
    store = FakeStore(unit(rng.normal(size=(3000, 8))))
    index = index_without_rebuilds(tmp_path)
    index.reference = ReferenceSample(index, size=500)
    index.rebuild(store)
    first = index.reference.current()[0].copy()
    assert len(first) == 500 and len(set(first.tolist())) == 500
    index.add(np.arange(5000, 5100), unit(rng.normal(size=(100, 8))))  # +3 %: kept
    assert np.array_equal(index.reference.current()[0], first)
    index.add(np.arange(6000, 6400), unit(rng.normal(size=(400, 8))))  # +17 %: re-drawn
    second = index.reference.current()[0].copy()
    assert not np.array_equal(second, first)
    index.rebuild(FakeStore(unit(rng.normal(size=(3000, 8))), first_id=10000))  # new tier
    drawn = index.reference.current()[0]
    assert (drawn >= 10000).sum() > 350  # ~3000 of the 3500 vectors are in the new tier
    assert not (set(drawn.tolist()) & set(range(1, 3001)))  # the old tier's rows are gone


def test_find_similar_gives_each_result_its_percentile_beside_the_raw_score(tmp_path):
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(200, 16)))
    store = FakeStore(vectors)
    index = index_without_rebuilds(tmp_path)
    index.add(store.ids, vectors)
    query = {"instance": "inst-1", "patient_id": "P1"}
    results = find_similar(index, store, vectors[0], Params(k=50, group_by="instance"), query)
    assert len(results) == 50 and "inst-1" not in {r["instance"] for r in results}
    scores = [r["score"] for r in results]
    values = [r["percentile"] for r in results]
    assert scores == sorted(scores, reverse=True) and values == sorted(values, reverse=True)
    # exact here (200 vectors): the n-th best of the 199 other images beats 199 - n of them
    expected = [np.floor((199 - n) * 10000 / 199) / 100 for n in range(1, 51)]
    assert values == pytest.approx(expected)


def test_a_result_does_not_count_below_itself_whatever_the_float_noise():
    # the same cosine computed in another order differs in the last bits: still a tie
    sample = unit([[1, 0], [0.6, 0.8], [0, 1]])
    query = np.array([1.0, 0.0])
    for noise in (-4e-7, 0.0, 4e-7):
        assert percentiles(sample, query, [0.6 + noise])[0] == pytest.approx(100 / 3, abs=0.01)
    assert percentiles(sample, query, [0.6 + 3e-6])[0] == pytest.approx(66.66, abs=0.01)
