"""`cbmir import`: labelled JPG/PNG or figshare `.mat` files -> DICOM -> Orthanc.

Why: demos and tests need a filled archive. Each image becomes a Secondary Capture
instance with Modality MR and its label in the label tag (`cbmir.tools.dicomize`, written
by highdicom), and is stored through Orthanc's REST API
(POST /instances). UIDs are derived from the source, so re-running the import
stores nothing twice; the summary says what was stored, already present or failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from cbmir.core import dicom_tags, manifest
from cbmir.tools import dicomize, sources

STORED, PRESENT, FAILED = "stored", "already present", "failed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True,
                        help="CSV with columns path,label,patient_id,split (paths relative to it), "
                             "or a folder of figshare .mat files")
    add_orthanc_arguments(parser)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--url/--user/--password, shared by every command that talks to Orthanc."""
    parser.add_argument("--url", required=True, help="Orthanc base URL, e.g. http://localhost:8042")
    parser.add_argument("--user", default=os.environ.get("ORTHANC_USER"),
                        help="Orthanc user for HTTP basic auth (default: $ORTHANC_USER)")
    parser.add_argument("--password", default=os.environ.get("ORTHANC_PASSWORD"),
                        help="Orthanc password (default: $ORTHANC_PASSWORD, kept out of `ps`)")


def add_orthanc_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `cbmir demo`."""
    add_connection_arguments(parser)
    parser.add_argument("--label-tag", default=dicomize.DEFAULT_LABEL_TAG,
                        help="tag that carries the label: keyword or group,element "
                             "(default ImageComments = 0020,4000)")
    parser.add_argument("--limit", type=_positive_int, help="import at most N images")
    parser.add_argument("--splits", help="only these splits, comma separated (e.g. fold1,fold2)")
    parser.add_argument("--workers", type=_positive_int, default=4, help="parallel uploads (default 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds")


@dataclass
class Outcome:
    status: str
    detail: str = ""


class OrthancUploader:
    """POST /instances with one HTTP session per thread (requests sessions are not thread-safe)."""

    def __init__(self, url: str, user: str | None, password: str | None, timeout: float):
        self.url = url.rstrip("/")
        self.auth = (user, password or "") if user else None
        self.timeout = timeout
        self._local = threading.local()

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = self.auth
        return session

    def check(self) -> str:
        """Orthanc's version, or raise with a message a user can act on."""
        import requests

        try:
            response = self._session().get(f"{self.url}/system", timeout=self.timeout)
        except requests.RequestException as error:
            raise ConnectionError(f"cannot reach Orthanc at {self.url}: {error}") from error
        if response.status_code == 401:
            raise PermissionError(f"Orthanc at {self.url} refused the credentials (401): "
                                  "pass --user and --password")
        if not response.ok:
            raise ConnectionError(f"Orthanc at {self.url} answered {response.status_code} on /system")
        return str(response.json().get("Version", "unknown"))

    def store(self, data: bytes) -> Outcome:
        import requests

        try:
            response = self._session().post(f"{self.url}/instances", data=data, timeout=self.timeout,
                                            headers={"Content-Type": "application/dicom"})
        except requests.RequestException as error:
            return Outcome(FAILED, f"upload failed: {error}")
        if not response.ok:
            return Outcome(FAILED, f"Orthanc answered {response.status_code}: {response.text[:200]}")
        answer = response.json()
        status = answer.get("Status", "") if isinstance(answer, dict) else ""
        return Outcome(PRESENT if status == "AlreadyStored" else STORED, str(answer.get("ID", "")))


def convert(item: sources.SourceItem, label_tag: str, study_date: str) -> bytes:
    """One source item -> DICOM Part 10 bytes."""
    image = sources.load_item(item)
    dataset = dicomize.make_instance(
        image.pixels, patient_id=image.patient_id, source_key=image.source_key,
        series_description=image.series_description, label=image.label, label_tag=label_tag,
        instance_number=image.instance_number, study_date=study_date)
    return dicomize.to_bytes(dataset)


def _import_one(item, uploader: OrthancUploader, label_tag: str, study_date: str) -> Outcome:
    try:
        data = convert(item, label_tag, study_date)
    except (sources.SourceError, ValueError, OSError) as error:
        return Outcome(FAILED, f"conversion failed: {error}")
    return uploader.store(data)


def import_items(items: list[sources.SourceItem], uploader: OrthancUploader, label_tag: str,
                 workers: int = 4, progress: bool = True) -> Counter:
    """Convert and store `items`; failures are printed, never raised. Returns counts by status."""
    from tqdm import tqdm

    study_date = _dt.date.today().strftime("%Y%m%d")
    counts: Counter = Counter({STORED: 0, PRESENT: 0, FAILED: 0})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(items), unit="image", disable=not progress, file=sys.stderr) as bar:
        futures = {pool.submit(_import_one, item, uploader, label_tag, study_date): item
                   for item in items}
        for future in as_completed(futures):
            outcome = future.result()
            counts[outcome.status] += 1
            if outcome.status == FAILED:
                tqdm.write(f"FAILED {futures[future].path}: {outcome.detail}", file=sys.stderr)
            bar.update(1)
    return counts


def parse_splits(text: str | None) -> set[str] | None:
    """"fold1, fold2" -> {"fold1", "fold2"}; None when no split was asked for."""
    return set(manifest.parse_splits(text)) or None


def run_import(items: list[sources.SourceItem], args: argparse.Namespace) -> int:
    """Shared by `cbmir import` and `cbmir demo`: check Orthanc, import, print the summary."""
    try:
        dicom_tags.parse_tag(args.label_tag)
    except ValueError as error:
        print(f"cbmir import: {error}", file=sys.stderr)
        return 2
    try:
        import highdicom  # noqa: F401 - writes the objects; an offline-tools extra, not the plugin's
    except ImportError:
        print("cbmir import: needs highdicom: pip install 'orthanc-cbmir[import]' "
              "(or pip install highdicom)", file=sys.stderr)
        return 2
    uploader = OrthancUploader(args.url, args.user, args.password, args.timeout)
    try:
        version = uploader.check()
    except (ConnectionError, PermissionError) as error:
        print(f"cbmir import: {error}", file=sys.stderr)
        return 2
    print(f"importing {len(items)} images into Orthanc {version} at {args.url}", file=sys.stderr)
    counts = import_items(items, uploader, args.label_tag, args.workers,
                          progress=sys.stderr.isatty())
    print(f"stored {counts[STORED]}, already present {counts[PRESENT]}, failed {counts[FAILED]}")
    return 1 if counts[FAILED] else 0


def run(args: argparse.Namespace) -> int:
    try:
        items = sources.collect(args.manifest, parse_splits(args.splits), args.limit)
    except (sources.SourceError, manifest.ManifestError, OSError) as error:
        print(f"cbmir import: {error}", file=sys.stderr)
        return 2
    if not items:
        print("cbmir import: nothing to import (empty manifest, or no row in --splits)",
              file=sys.stderr)
        return 2
    return run_import(items, args)
