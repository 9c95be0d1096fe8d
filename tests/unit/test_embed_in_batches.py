"""cbmir.core.embed.embed_in_batches: the one batching loop (worker, cbmir embed, evaluation)."""
from __future__ import annotations

import numpy as np
import pytest

from cbmir.core.embed import embed_in_batches


def _fake_embed(calls: list):
    """Vector = [item, batch number]: shows the order and which batch each item was in."""
    def embed(batch):
        calls.append(list(batch))
        return np.array([[float(item), float(len(calls))] for item in batch])
    return embed


@pytest.mark.parametrize("count,batch_size,sizes", [(7, 3, [3, 3, 1]), (6, 3, [3, 3]),
                                                   (2, 8, [2]), (5, 1, [1] * 5)])
def test_consecutive_batches_in_order(count, batch_size, sizes):
    calls, seen = [], []
    vectors = embed_in_batches(_fake_embed(calls), list(range(count)), batch_size, 2,
                               lambda n, seconds: seen.append((n, seconds >= 0)))
    assert [len(c) for c in calls] == sizes and sum(calls, []) == list(range(count))
    assert vectors.dtype == np.float32 and vectors.shape == (count, 2)
    assert vectors[:, 0].tolist() == list(range(count))
    assert seen == [(n, True) for n in sizes]


def test_no_items_gives_an_empty_matrix_of_the_right_width():
    calls = []
    vectors = embed_in_batches(_fake_embed(calls), [], 4, 16)
    assert vectors.shape == (0, 16) and vectors.dtype == np.float32 and calls == []


def test_an_array_is_sliced_not_copied_item_by_item():
    inputs = np.arange(10, dtype=np.float32).reshape(5, 2)
    got = []
    vectors = embed_in_batches(lambda batch: got.append(type(batch)) or batch * 2, inputs, 2, 2)
    assert got == [np.ndarray] * 3 and np.array_equal(vectors, inputs * 2)
