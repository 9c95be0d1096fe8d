"""The `CBMIR` section of orthanc.json, read once and validated.

Why validate up front: a typo found at start-up with the full key path in the
message is cheap; the same typo found by the ingest worker hours later is not.
`load_config` is pure (a dict in, a `Config` out) so it is unit-tested without
Orthanc. Every default lives in the `Config` dataclass and nowhere else: orthanc.json and
docker/cbmir.json set only what differs, callers (VectorIndex, Pacer) get the values from here,
and tests/unit/service/test_config_docs.py checks the README and docs/plugin.md tables against it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cbmir.core import dicom_tags

SECTION = "CBMIR"
# The install root (a checkout, or /opt/cbmir in the Docker image): the one place runtime code
# finds its own files from (plugin/cbmir/service/config.py -> three levels up).
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = REPO_ROOT / "models" / "default.onnx"
DEFAULT_VIEWER = REPO_ROOT / "viewer-extension" / "dist"
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A CBMIR setting is invalid; the message names the full key path."""


@dataclass(frozen=True)
class Config:
    model_path: Path = DEFAULT_MODEL
    index_directory: Path = Path("OrthancStorage/cbmir")
    modalities: tuple[str, ...] = ("MR",)
    label_tag: tuple[int, int] = (0x0020, 0x4000)
    batch_size: int = 8
    threads: int = 0
    index_threads: int = 0
    device: str = "auto"
    rebuild_threshold: int = 1000
    annoy_trees: int = 32
    annoy_search_k: int = 20000
    candidates: int = 100
    max_upload_bytes: int = 8 * 1024 * 1024  # one query slice (1024x1024 16-bit: 2 MiB DICOM)
    catch_up_seconds: float = 5.0
    index_delay_seconds: float = 1.2
    # Decoded-size limits checked on the header before any pixel is decoded (issue 11):
    # rows x columns per frame (4096 x 4096), and rows x columns x frames per instance
    # (about 256 MiB of 16-bit pixels, which a deflated file inflates to in memory).
    max_frame_pixels: int = 4096 * 4096
    max_instance_pixels: int = 128 * 1024 * 1024
    viewer_directory: Path = DEFAULT_VIEWER  # served under /ohif/ when it holds index.html
    # Cluster mode (issue 15, docs/cluster.md): "postgresql" keeps vectors, work claims and
    # state in PostgreSQL, shared by every Orthanc node; "sqlite" is the one-node default.
    store: str = "sqlite"
    postgresql: dict | None = None  # {"Host", "Port", ...}; None: Orthanc's PostgreSQL section
    node_name: str = ""  # "": Orthanc's Name + hostname + HttpPort (see node_name_for)
    claim_seconds: float = 30.0  # a claim's lease; a dead node's work is taken over after it
    replica_poll_seconds: float = 0.5  # replica/claimer poll (NOTIFY wakes them at once)
    reconcile_seconds: float = 300.0  # cluster: periodic reconciliation against Orthanc

    def accepts_modality(self, modality: str) -> bool:
        return "*" in self.modalities or (modality or "").upper() in self.modalities

    @property
    def label_tag_text(self) -> str:
        return f"{self.label_tag[0]:04X},{self.label_tag[1]:04X}"


# CBMIR key -> Config field: every key orthanc.json may set, and the tables document.
KEYS = {"ModelPath": "model_path", "IndexDirectory": "index_directory",
        "Modalities": "modalities", "LabelTag": "label_tag", "BatchSize": "batch_size",
        "Threads": "threads", "IndexThreads": "index_threads", "Device": "device",
        "RebuildThreshold": "rebuild_threshold",
        "AnnoyTrees": "annoy_trees", "AnnoySearchK": "annoy_search_k", "Candidates": "candidates",
        "MaxUploadBytes": "max_upload_bytes", "CatchUpSeconds": "catch_up_seconds",
        "IndexDelaySeconds": "index_delay_seconds", "MaxFramePixels": "max_frame_pixels",
        "MaxInstancePixels": "max_instance_pixels", "ViewerDirectory": "viewer_directory",
        "Store": "store", "PostgreSQL": "postgresql", "NodeName": "node_name",
        "ClaimSeconds": "claim_seconds", "ReplicaPollSeconds": "replica_poll_seconds",
        "ReconcileSeconds": "reconcile_seconds"}


def _key(name: str) -> str:
    return f"{SECTION}.{name}"


def _int(section: dict, name: str, default: int, low: int, high: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{_key(name)} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _seconds(section: dict, name: str, default: float, low: float, high: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{_key(name)} must be a number of seconds in [{low:g}, {high:g}], "
                          f"got {value!r}")
    return float(value)


def _path(section: dict, name: str, default: Path | None) -> Path | None:
    value = section.get(name, default)
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ConfigError(f"{_key(name)} must be a non-empty path string, got {value!r}")
    return Path(value).expanduser()


def parse_tag(text, key: str = _key("LabelTag")) -> tuple[int, int]:
    """'0020,4000', '(0020,4000)', '00204000' or a keyword such as 'ImageComments'."""
    try:
        tag = dicom_tags.parse_tag(text)
    except ValueError:
        raise ConfigError(f"{key} must be a DICOM tag like \"0020,4000\" or a keyword, "
                          f"got {text!r}") from None
    return tag.group, tag.element


def default_index_directory(orthanc_config: dict, node_name: str | None = None) -> Path:
    """Beside Orthanc's own database, so a backup of one folder keeps both. In cluster mode
    one sub-folder per node: the Annoy files are each node's own replica, and nodes often
    share the StorageDirectory."""
    base = orthanc_config.get("IndexDirectory") or orthanc_config.get("StorageDirectory") \
        or "OrthancStorage"
    if node_name:
        return Path(str(base)) / "cbmir" / re.sub(r"[^A-Za-z0-9_.-]", "_", node_name)
    return Path(str(base)) / "cbmir"


STORES = ("sqlite", "postgresql")
PG_KEYS = ("Host", "Port", "Database", "Username", "Password")


def node_name_for(orthanc_config: dict) -> str:
    """Orthanc's Name + hostname + HttpPort: unique per node of a cluster on one machine."""
    import socket
    return (f"{orthanc_config.get('Name') or 'orthanc'}@{socket.gethostname()}:"
            f"{orthanc_config.get('HttpPort', 8042)}")


def postgresql_settings(section: dict, orthanc_config: dict) -> dict:
    """CBMIR.PostgreSQL, else Orthanc's own PostgreSQL section (the index database)."""
    own = section.get("PostgreSQL")
    source, key = (own, _key("PostgreSQL")) if own is not None else \
        (orthanc_config.get("PostgreSQL"), "PostgreSQL")
    if not isinstance(source, dict) or not source:
        raise ConfigError(f"{_key('Store')} is \"postgresql\": set {_key('PostgreSQL')} "
                          f"{{{', '.join(PG_KEYS)}}} or Orthanc's PostgreSQL section")
    if own is not None:
        unknown = sorted(set(own) - set(PG_KEYS) - {"ConnectionUri"})
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(f'{key}.{k}' for k in unknown)}; "
                              f"known: {', '.join(PG_KEYS)}, ConnectionUri")
    settings = {k: source[k] for k in PG_KEYS + ("ConnectionUri",) if k in source}
    if "Port" in settings and (isinstance(settings["Port"], bool)
                               or not isinstance(settings["Port"], int)):
        raise ConfigError(f"{key}.Port must be an integer, got {settings['Port']!r}")
    if "ConnectionUri" not in settings and "Database" not in settings:
        raise ConfigError(f"{key} needs a Database (or a ConnectionUri)")
    return settings


def load_config(orthanc_config: dict) -> Config:
    """Validate the CBMIR section of a full Orthanc configuration dict."""
    section = orthanc_config.get(SECTION, {})
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{SECTION} must be a JSON object, got {type(section).__name__}")
    known = set(KEYS)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(_key(k) for k in unknown)}; "
                          f"known: {', '.join(sorted(known))}")

    default = Config()  # the dataclass holds each default once; load_config only validates
    modalities = section.get("Modalities", list(default.modalities))
    if (not isinstance(modalities, list) or not modalities
            or not all(isinstance(m, str) and m.strip() for m in modalities)):
        raise ConfigError(f"{_key('Modalities')} must be a non-empty list of modality codes "
                          f"such as [\"MR\"] (or [\"*\"]), got {modalities!r}")
    device = section.get("Device", default.device)
    if device not in DEVICES:
        raise ConfigError(f"{_key('Device')} must be one of {', '.join(DEVICES)}, got {device!r}")

    store = section.get("Store", default.store)
    if store not in STORES:
        raise ConfigError(f"{_key('Store')} must be one of {', '.join(STORES)}, got {store!r}")
    node_name = section.get("NodeName", default.node_name)
    if not isinstance(node_name, str):
        raise ConfigError(f"{_key('NodeName')} must be a string, got {node_name!r}")
    if store == "postgresql" and not node_name.strip():
        node_name = node_name_for(orthanc_config)

    return Config(
        store=store, node_name=node_name.strip(),
        postgresql=postgresql_settings(section, orthanc_config) if store == "postgresql" else None,
        claim_seconds=_seconds(section, "ClaimSeconds", default.claim_seconds, 1, 3600),
        replica_poll_seconds=_seconds(section, "ReplicaPollSeconds",
                                      default.replica_poll_seconds, 0.01, 60),
        reconcile_seconds=_seconds(section, "ReconcileSeconds", default.reconcile_seconds,
                                   1, 86400),
        model_path=_path(section, "ModelPath", default.model_path),
        index_directory=_path(section, "IndexDirectory", default_index_directory(
            orthanc_config, node_name if store == "postgresql" else None)),
        modalities=tuple(m.strip().upper() for m in modalities),
        label_tag=parse_tag(section.get("LabelTag", default.label_tag_text)),
        batch_size=_int(section, "BatchSize", default.batch_size, 1, 512),
        threads=_int(section, "Threads", default.threads, 0, 256),
        index_threads=_int(section, "IndexThreads", default.index_threads, 0, 256),
        device=device,
        rebuild_threshold=_int(section, "RebuildThreshold", default.rebuild_threshold, 1, 10_000_000),
        annoy_trees=_int(section, "AnnoyTrees", default.annoy_trees, 1, 1000),
        annoy_search_k=_int(section, "AnnoySearchK", default.annoy_search_k, -1, 100_000_000),
        candidates=_int(section, "Candidates", default.candidates, 10, 100_000),
        max_upload_bytes=_int(section, "MaxUploadBytes", default.max_upload_bytes, 1024, 2 ** 31),
        catch_up_seconds=_seconds(section, "CatchUpSeconds", default.catch_up_seconds, 0.1, 3600),
        index_delay_seconds=_seconds(section, "IndexDelaySeconds", default.index_delay_seconds,
                                     0, 3600),
        viewer_directory=_path(section, "ViewerDirectory", default.viewer_directory),
        max_frame_pixels=_int(section, "MaxFramePixels", default.max_frame_pixels, 64, 2 ** 31),
        max_instance_pixels=_int(section, "MaxInstancePixels", default.max_instance_pixels,
                                 64, 2 ** 34),
    )
