"""What the ingest worker does when the index cannot be written, or an image kills it.

Why: with the index folder on a full disk every batch failed, was logged and then
counted as done: 286 of 300 images were lost for good while status said pending 0.
A write that fails now puts its batch back in the queue (still pending, so the
/changes checkpoint cannot pass it) and the worker waits, 1 s doubling up to 60 s,
before it tries again; status shows the error and the retries meanwhile.

And an image that kills the process (out of memory, a crash in a decoder) must not
be replayed at every restart forever: an attempt counter is committed before the
work starts and cleared after it. At the next start an instance whose counter is
still set is tried alone (so it blames no neighbour of its batch), and one that was
in progress at `MAX_ATTEMPTS` deaths is recorded as failed instead.
"""
from __future__ import annotations

import time

MAX_ATTEMPTS = 2


def is_store_error(error: BaseException, store) -> bool:
    """True for a failed index write worth retrying: the store names its own error types."""
    return isinstance(error, store.retryable_errors)


def killed_reason(count: int) -> str:
    return (f"failed: CBMIR stopped (killed, e.g. out of memory) during {count} attempts to "
            f"index this instance; not retried (POST /cbmir/reindex tries again)")


class Backoff:
    """Exponential wait after failed index writes; `describe()` is shown in status."""

    def __init__(self, first: float = 1.0, longest: float = 60.0):
        self.first, self.longest = first, longest
        self.failures = 0
        self.until = 0.0
        self.error: str | None = None
        self.since: float | None = None

    def failed(self, error: BaseException) -> float:
        self.failures += 1
        delay = min(self.longest, self.first * 2 ** (self.failures - 1))
        self.until = time.monotonic() + delay
        self.error = f"{type(error).__name__}: {error}"
        self.since = self.since or time.time()
        return delay

    def succeeded(self) -> int:
        """Returns how many failures preceded this success (0: none)."""
        failures, self.failures, self.error, self.since = self.failures, 0, None, None
        return failures

    def waiting(self) -> float:
        """Seconds left before the next try (0: go)."""
        return max(0.0, self.until - time.monotonic()) if self.failures else 0.0

    def describe(self) -> dict | None:
        if not self.failures:
            return None
        return {"error": self.error, "failed_attempts": self.failures, "since": self.since,
                "next_retry_seconds": round(self.waiting(), 1)}
