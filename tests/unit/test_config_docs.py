"""Every CBMIR default is defined once, in `Config`: the README and docs/plugin.md tables say the
same (every key, every default), and the shipped orthanc.json / docker/cbmir.json set only what
differs from it."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from cbmir.service.config import KEYS, REPO_ROOT, Config, load_config

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/plugin.md")
# What the tables write for values that depend on the installation.
SYMBOLS = {"<checkout>": str(REPO_ROOT), "<Orthanc IndexDirectory>": "OrthancStorage"}
UNITS = {"KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}


def key_table(path: Path) -> dict[str, str]:
    """Key -> Default cell of the `| Key | Default | Meaning |` table."""
    rows, inside = {}, False
    for line in path.read_text().splitlines():
        if re.match(r"^\|\s*Key\s*\|\s*Default\s*\|", line):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        match = re.match(r"^\|\s*`(\w+)`\s*\|([^|]*)\|", line) if inside else None
        if match:
            rows[match.group(1)] = match.group(2).strip()
    assert rows, f"no CBMIR key table in {path}"
    return rows


def documented_value(cell: str):
    """`["MR"]` -> ["MR"], `<checkout>/models/x` -> a path, 8 MiB -> 8388608, 0 (auto) -> 0."""
    code = re.match(r"^`([^`]*)`", cell)
    if code:
        text = code.group(1)
        for symbol, value in SYMBOLS.items():
            text = text.replace(symbol, value)
        try:
            return json.loads(text)
        except ValueError:
            return text  # a path
    words = cell.split()
    number = json.loads(words[0])
    if len(words) > 1 and words[1] in UNITS:
        number *= UNITS[words[1]]
    return number


def test_every_config_field_has_a_key():
    assert sorted(KEYS.values()) == sorted(f.name for f in fields(Config))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_table_documents_every_key(document):
    assert sorted(key_table(REPO / document)) == sorted(KEYS)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_documented_default_is_the_configs(document):
    defaults = Config()
    wrong = {}
    for key, cell in key_table(REPO / document).items():
        value = documented_value(cell)
        loaded = getattr(load_config({"CBMIR": {key: value}}), KEYS[key])
        if loaded != getattr(defaults, KEYS[key]):
            wrong[key] = (cell, getattr(defaults, KEYS[key]))
    assert not wrong, f"{document}: documented default -> Config's: {wrong}"


def test_the_config_default_index_directory_is_the_one_without_orthanc_settings():
    assert load_config({}) == Config()


@pytest.mark.parametrize("path", ["orthanc.json", "docker/cbmir.json"])
def test_the_shipped_files_set_only_what_differs_from_config(path):
    text = (REPO / path).read_text().replace("@REPO@", str(REPO_ROOT)).replace("@HOME@", "/home")
    section = json.loads(text)["CBMIR"]
    defaults = Config()
    same = [key for key, value in section.items()
            if getattr(load_config({"CBMIR": {key: value}}), KEYS[key]) == getattr(defaults, KEYS[key])]
    assert not same, f"{path} repeats the default of {same}: leave it to Config"
