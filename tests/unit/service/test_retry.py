"""cbmir.service.retry: the wait after failed index writes."""
from cbmir.service.retry import Backoff


def test_backoff_doubles_up_to_a_minute_and_resets():
    backoff = Backoff()
    delays = [backoff.failed(OSError("full")) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.describe()["failed_attempts"] == 8 and backoff.waiting() > 0
    assert backoff.succeeded() == 8 and backoff.describe() is None and backoff.waiting() == 0
