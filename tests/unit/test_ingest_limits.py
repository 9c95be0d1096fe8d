"""Pure logic of the ingest fault handling (issue 11): the bounded header reader and size
limits, frame reduction, the attempt counters, the retry backoff, the store's error path."""
import io
import sqlite3

import numpy as np
import pydicom
import pytest

from cbmir.core import limits
from cbmir.service.config import ConfigError, load_config
from cbmir.service.retry import Backoff
from cbmir.vectors.store import Record, Store
from support.bombs import deflated_image
from support.dicom_factory import mr_image


def test_the_header_of_a_deflated_file_is_read_without_inflating_the_pixels():
    data = deflated_image(4096, 4096, 8, label="big")  # 256 MiB of pixels inflated
    header = limits.read_header(data, max_header_bytes=4 * 1024 * 1024)
    assert (header.Rows, header.Columns, header.NumberOfFrames) == (4096, 4096, 8)
    assert header.ImageComments == "big" and "PixelData" not in header
    with pytest.raises(limits.TooLarge, match="MaxInstancePixels"):
        limits.check_size(header, 4096 * 4096, 4096 * 4096 * 4)
    with pytest.raises(limits.TooLarge, match="MaxFramePixels"):
        limits.check_size(header, 1024 * 1024, 2 ** 34)
    limits.check_size(header, 4096 * 4096, 4096 * 4096 * 8)  # exactly at the limits: allowed


def test_a_small_deflated_file_still_decodes_and_a_plain_one_reads_its_header():
    data = deflated_image(32, 48, 2, noise=True)
    assert limits.read_header(data).Columns == 48
    assert pydicom.dcmread(io.BytesIO(data)).pixel_array.shape == (2, 32, 48)
    plain = mr_image(np.ones((16, 16)), "P", "1.2", "1.3", label="x")
    header = limits.read_header(plain)
    assert header.ImageComments == "x" and "PixelData" not in header
    with pytest.raises(limits.BadHeader):
        limits.read_header(b"not a dicom file at all" * 10)


def test_huge_frames_are_block_averaged_before_preprocessing_and_small_ones_left_alone():
    frame = np.arange(4000 * 3000, dtype=np.uint16).reshape(4000, 3000)
    small = limits.reduce(frame, 160)
    assert max(small.shape) >= 4 * 160 and small.shape[0] < 4000 and small.dtype == np.float32
    mr = np.ones((512, 512), np.uint16)
    assert limits.reduce(mr, 160) is mr


def test_the_limits_are_configuration_keys_with_validated_values():
    config = load_config({"CBMIR": {"MaxFramePixels": 1000, "MaxInstancePixels": 5000}})
    assert (config.max_frame_pixels, config.max_instance_pixels) == (1000, 5000)
    assert load_config({}).max_frame_pixels == 4096 * 4096
    with pytest.raises(ConfigError, match="CBMIR.MaxFramePixels"):
        load_config({"CBMIR": {"MaxFramePixels": "big"}})


def test_attempt_counters_survive_until_cleared(tmp_path):
    store = Store(tmp_path)
    store.begin_attempt(["a", "b"])
    store.begin_attempt(["a"])
    assert Store(tmp_path).attempts(["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    store.end_attempt(["a"])
    assert store.attempts(["a", "b"]) == {"a": 0, "b": 1}
    assert [r["instance"] for r in store.in_progress()] == ["b"]


def test_backoff_doubles_up_to_a_minute_and_resets():
    backoff = Backoff()
    delays = [backoff.failed(OSError("full")) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.describe()["failed_attempts"] == 8 and backoff.waiting() > 0
    assert backoff.succeeded() == 8 and backoff.describe() is None and backoff.waiting() == 0


class _FailingCommit:
    """A connection whose COMMIT fails the way SQLITE_FULL can: transaction already gone."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)


def test_a_failed_write_raises_its_own_error_not_a_rollback_error(tmp_path, monkeypatch):
    store = Store(tmp_path)
    real = store._conn()
    monkeypatch.setattr(store, "_conn", lambda: _FailingCommit(real))
    record = Record(instance="a", frame=0, vector=np.ones(4, np.float32))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        store.add([record], 1)


def test_an_image_queued_by_a_query_before_its_arrival_moves_to_the_arrival_lane():
    """GET /cbmir/similar right after an upload can queue it (backlog) before NEW_INSTANCE;
    the arrival must still put it in the fast lane (backlog waits while uploads go on)."""
    from cbmir.service.workqueue import WorkQueue

    queue = WorkQueue()
    queue.put("old-backlog")
    queue.put("new")                # by the 409 answer
    queue.put("new", arrival=True)  # then NEW_INSTANCE
    assert queue.get_batch(5, timeout=0, arrivals_only=True) == [("new", False)]
    assert queue.oldest_age(arrivals_only=True) == 0.0
    assert queue.get_batch(5, timeout=0) == [("old-backlog", False)]
    assert queue.pending() == 2 and not queue.wait_for_work(timeout=0)


def test_pixel_tag_bytes_inside_an_earlier_value_do_not_cut_the_header_short():
    """A hostile deflated bomb hides the pixel data tag's bytes in PatientName: the header
    must still show its rows and columns, so the limits refuse it."""
    data = deflated_image(8192, 8192, 4, patient_id="A\xe0\x7f\x10\x00B".encode("latin1")
                          .decode("latin1"))
    header = limits.read_header(data)
    with pytest.raises(limits.TooLarge, match="MaxFramePixels"):
        limits.check_size(header, 4096 * 4096, 2 ** 34)


def test_a_deflated_file_is_inflated_to_disk_only_up_to_its_declared_pixels():
    data = deflated_image(512, 512, 2, noise=True)
    header = limits.read_header(data)
    assert limits.inflated_limit(header) >= 512 * 512 * 2 * 2
    written = io.BytesIO()
    limits.inflate_to(data, written, limits.inflated_limit(header))
    assert len(written.getvalue()) > 512 * 512 * 2 * 2
    with pytest.raises(limits.TooLarge, match="inflates past"):
        limits.inflate_to(data, io.BytesIO(), 512 * 512 * 2)
