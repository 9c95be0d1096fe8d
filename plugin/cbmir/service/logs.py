"""A small levelled logger over Orthanc's log (info / warning / error).

Why: admins read Orthanc's log, where warnings show by default and info lines
only with `--verbose`. Routine events (an image indexed or skipped, an index
rebuilt) go to info, what needs a look (a follower retry, a model change) to
warning, failures (an image that cannot be decoded, a failed re-index) to
error; one line per event, with the instance ID where there is one.

`Log` is injectable (Orthanc's: `Gateway.log`): the engine and the ingestor take any object with
`info/warning/error`, and a plain callable (the old `log=print` of tests)
still works; calling a `Log` directly logs a warning, so older call sites
(`engine.log("...")`) keep working.
"""
from __future__ import annotations


class Log:
    def __init__(self, info=print, warning=print, error=print):
        self.info, self.warning, self.error = info, warning, error

    def __call__(self, message: str) -> None:
        self.warning(message)

    @classmethod
    def wrap(cls, log) -> "Log":
        """A Log as is; any other callable logs every level through itself."""
        if isinstance(log, Log):
            return log
        return cls(log, log, log)


def describe_index(described: dict) -> str:
    """`VectorIndex.describe()` as one readable phrase (no dict in the log)."""
    return (f"generation {described.get('generation')}: {described.get('size', 0)} vector(s), "
            f"{described.get('built', 0)} in Annoy, {described.get('fresh', 0)} fresh")
