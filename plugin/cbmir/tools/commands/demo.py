"""`cbmir demo`: download Cheng et al.'s public figshare brain tumour set and import it.

Why: a new user with internet gets a searchable archive with one command. The
file list comes from the official figshare record (API v2, article 1512427);
each zip of MATLAB v7.3 files is downloaded once into a cache, checked against
figshare's MD5, unpacked, and handed to `cbmir import`'s code. `--source`
points the API base URL elsewhere (a mirror, or a stand-in server in tests).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

from cbmir.tools import sources
from cbmir.tools.commands import import_images

ARTICLE_ID = 1512427
DEFAULT_SOURCE = "https://api.figshare.com/v2"
USER_AGENT = "orthanc-cbmir-demo/0.1 (+https://figshare.com/articles/dataset/1512427)"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The record or a file could not be fetched or failed verification."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help=f"figshare API base URL (default {DEFAULT_SOURCE}); "
                             f"the record is read from SOURCE/articles/{ARTICLE_ID}")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "cbmir" / f"figshare-{ARTICLE_ID}",
                        help="where downloads and unpacked .mat files are kept (reused next time)")
    import_images.add_orthanc_arguments(parser)


def _session():
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def fetch_file_list(session, source: str, timeout: float = 60.0) -> list[dict]:
    """The record's files that matter: the zips of .mat images and the fold table (.mat)."""
    import requests

    url = f"{source.rstrip('/')}/articles/{ARTICLE_ID}"
    try:
        response = session.get(url, timeout=timeout)
        response.raise_for_status()
        record = response.json()
    except (requests.RequestException, ValueError) as error:
        raise DownloadError(f"cannot read the figshare record {url}: {error}") from error
    files = [entry for entry in record.get("files", [])
             if str(entry.get("name", "")).lower().endswith((".zip", ".mat"))
             and entry.get("download_url")]
    if not any(entry["name"].lower().endswith(".zip") for entry in files):
        raise DownloadError(f"the figshare record {url} lists no zip files")
    return files


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_md5(entry: dict) -> str:
    return str(entry.get("computed_md5") or entry.get("supplied_md5") or "").lower()


def download(session, entry: dict, directory: Path, timeout: float = 60.0) -> Path:
    """One file of the record into `directory`, verified by size and MD5; cached copies are kept."""
    import requests
    from tqdm import tqdm

    name = Path(entry["name"]).name
    target = directory / name
    expected = _expected_md5(entry)
    if target.is_file() and (not expected or _md5(target) == expected):
        return target
    partial = target.with_name(name + ".part")
    digest = hashlib.md5()
    try:
        with session.get(entry["download_url"], stream=True, timeout=timeout) as response:
            response.raise_for_status()
            total = int(entry.get("size") or response.headers.get("Content-Length") or 0)
            with partial.open("wb") as handle, tqdm(total=total or None, unit="B", unit_scale=True,
                                                    desc=name, file=sys.stderr,
                                                    disable=not sys.stderr.isatty()) as bar:
                for block in response.iter_content(CHUNK):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (requests.RequestException, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"download of {name} failed: {error}") from error
    size = partial.stat().st_size
    if entry.get("size") and size != int(entry["size"]):
        partial.unlink()
        raise DownloadError(f"{name}: got {size} bytes, the record says {entry['size']}")
    if expected and digest.hexdigest() != expected:
        partial.unlink()
        raise DownloadError(f"{name}: MD5 {digest.hexdigest()} does not match the record's {expected}")
    partial.replace(target)
    return target


def unpack(archive: Path, directory: Path) -> int:
    """The .mat members of a zip, flattened into `directory` (member paths are never trusted)."""
    marker = directory / f".{archive.name}.unpacked"
    if marker.exists():
        return 0
    count = 0
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = Path(member.filename.replace("\\", "/")).name
                if member.is_dir() or not name.lower().endswith(".mat") or name.startswith("."):
                    continue
                with bundle.open(member) as src, (directory / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                count += 1
    except (zipfile.BadZipFile, OSError) as error:
        raise DownloadError(f"cannot unpack {archive}: {error}") from error
    marker.write_text(f"{count}\n")
    return count


def prepare(source: str, cache: Path, timeout: float = 60.0) -> Path:
    """Download, verify and unpack the record into `cache`; the folder of .mat files."""
    downloads, mat_dir = cache / "downloads", cache / "mat"
    downloads.mkdir(parents=True, exist_ok=True)
    mat_dir.mkdir(parents=True, exist_ok=True)
    session = _session()
    for entry in fetch_file_list(session, source, timeout):
        path = download(session, entry, downloads, timeout)
        if path.suffix.lower() == ".zip":
            unpack(path, mat_dir)
        else:
            shutil.copyfile(path, mat_dir / path.name)
    return mat_dir


def run(args: argparse.Namespace) -> int:
    try:
        mat_dir = prepare(args.source, args.cache, args.timeout)
        items = sources.collect(mat_dir, import_images.parse_splits(args.splits), args.limit)
    except (DownloadError, sources.SourceError, OSError) as error:
        print(f"cbmir demo: {error}", file=sys.stderr)
        return 2
    if not items:
        wanted = f" in splits {args.splits} (folds come from the record's cvind.mat)" if args.splits else ""
        print(f"cbmir demo: no figshare images found in {mat_dir}{wanted}", file=sys.stderr)
        return 2
    print(f"{len(items)} figshare images ready in {mat_dir}", file=sys.stderr)
    return import_images.run_import(items, args)
