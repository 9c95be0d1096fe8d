"""The package boundaries of docs/design.md, checked on the source: one package per job.

core -> nothing else of cbmir; vectors -> core; service -> core, vectors; tools -> core, vectors
(never service); training (export/cbmir_train) -> core only. Only service touches the orthanc SDK,
and the plugin's packages import with the tools' and training's libraries absent.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugin" / "cbmir"
ALLOWED = {  # package -> cbmir packages it may import
    "core": {"core"},
    "vectors": {"core", "vectors"},
    "service": {"core", "vectors", "service"},
    "tools": {"core", "vectors", "tools"},
}
RUNTIME_PACKAGES = ("core", "vectors", "service")
NOT_RUNTIME = ("requests", "tqdm", "h5py", "highdicom", "torch", "matplotlib", "sklearn")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # within its own package: fine in training, not in the plugin
                assert PACKAGE not in path.parents, f"{path}: use cbmir.<package>.<module>"
                continue
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def cbmir_packages(names: set[str]) -> set[str]:
    return {name.split(".")[1] for name in names if name.startswith("cbmir.")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    for path in sorted((PACKAGE / package).rglob("*.py")):
        used = cbmir_packages(imported_modules(path))
        assert used <= ALLOWED[package], f"{path.relative_to(REPO)} imports cbmir.{used - ALLOWED[package]}"


def test_only_service_touches_the_orthanc_sdk():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "service" in path.relative_to(PACKAGE).parts:
            continue
        assert "orthanc" not in imported_modules(path), path


def test_training_imports_only_the_core():
    for path in sorted((REPO / "export" / "cbmir_train").rglob("*.py")):
        used = cbmir_packages(imported_modules(path))
        assert used <= {"core"}, f"{path.relative_to(REPO)} imports cbmir.{used - {'core'}}"


def test_plugin_packages_import_without_tools_or_training_libraries():
    """The runtime venv (`make venv`, the Docker image) has none of NOT_RUNTIME: every module of
    the plugin's packages must import without them."""
    modules = sorted(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                     for package in RUNTIME_PACKAGES for path in (PACKAGE / package).rglob("*.py"))
    script = f"""
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {NOT_RUNTIME!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
for name in {modules!r}:
    importlib.import_module(name.removesuffix('.__init__'))
print(len({modules!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(modules) > 20
