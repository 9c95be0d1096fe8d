"""cbmir.service.availability: an unusable index folder is a reason and a retry, not an exit."""
import time

from cbmir.service.availability import Recovery


def test_recovery_keeps_the_reason_and_retries_until_build_works():
    attempts, logs = [], []

    def build():
        attempts.append(1)
        if len(attempts) < 3:
            raise FileExistsError("[Errno 17] File exists: '/x/cbmir'")

    recovery = Recovery(build, 0.05, logs.append)
    assert recovery.attempt() is False
    assert "index unavailable: FileExistsError" in recovery.reason
    recovery.start_retrying()
    deadline = time.monotonic() + 10
    while recovery.reason is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recovery.reason is None and len(attempts) == 3
    assert len(logs) == 2  # one line for the failure (not one per retry), one for the recovery
    recovery.stop()
