"""The /ohif/ serving rules, without Orthanc (the fake module records the callbacks)."""
from pathlib import Path

import pytest

from cbmir.service.config import DEFAULT_VIEWER, REPO_ROOT, load_config
from cbmir.service.gateway import Gateway
from cbmir.service.viewer_routes import register_static_routes, resolve_request
from support.fake_orthanc import FakeOrthanc, FakeOutput


@pytest.fixture()
def viewer(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<html>index</html>")
    (tmp_path / "app-config.js").write_text("window.config = {};")
    (tmp_path / "app.bundle.0f61.js").write_text("bundle")
    (tmp_path / "codec.wasm").write_bytes(b"\0asm")
    (tmp_path / "cbmir").mkdir()
    (tmp_path / "cbmir" / "cbmir-extension.js").write_text("export default {}")
    (tmp_path.parent / "secret.txt").write_text("secret")
    return tmp_path


def test_root_and_spa_routes_get_index_html(viewer):
    for relative in ("", "viewer", "viewer/dicomweb", "notfoundstudy",
                     "viewer/1.2.840.113619.2.55.3.604688119"):
        resolved = resolve_request(viewer, relative)
        assert resolved.status == 200, relative
        assert resolved.path == (viewer / "index.html").resolve()
        assert resolved.mime.startswith("text/html")


def test_known_assets_are_files_with_their_mime_type(viewer):
    assert resolve_request(viewer, "codec.wasm").mime == "application/wasm"
    assert resolve_request(viewer, "app.bundle.0f61.js").mime.startswith("text/javascript")
    resolved = resolve_request(viewer, "cbmir/cbmir-extension.js")
    assert resolved.path == (viewer / "cbmir" / "cbmir-extension.js").resolve()


def test_missing_asset_is_404_not_index_html(viewer):
    assert resolve_request(viewer, "missing.js").status == 404
    assert resolve_request(viewer, "assets/none.png").status == 404


@pytest.mark.parametrize("relative", ["../secret.txt", "cbmir/../../secret.txt", "./index.html",
                                      "a//b.js", "/etc/passwd", "..\\secret.txt", "x\x00.js", ".."])
def test_traversal_and_odd_paths_are_refused(viewer, relative):
    assert resolve_request(viewer, relative).status == 400


def test_symlink_out_of_the_tree_is_refused(viewer):
    (viewer / "link.txt").symlink_to(viewer.parent / "secret.txt")
    assert resolve_request(viewer, "link.txt").status == 400


def test_unbuilt_viewer_is_a_404_with_the_build_command(tmp_path):
    resolved = resolve_request(tmp_path / "nothing", "viewer")
    assert resolved.status == 404
    assert "make -C viewer-extension build" in resolved.message


def test_viewer_directory_from_config_or_default(tmp_path):
    assert load_config({}).viewer_directory == DEFAULT_VIEWER == REPO_ROOT / "viewer-extension" / "dist"
    assert load_config({"CBMIR": {"ViewerDirectory": str(tmp_path)}}).viewer_directory == tmp_path


def _call(orthanc, regex, uri, method="GET", groups=()):
    output = FakeOutput()
    orthanc.routes[regex](output, uri, method=method, groups=groups, headers={}, get={})
    return output


def register(orthanc, viewer: Path):
    return register_static_routes(Gateway(orthanc), load_config({"CBMIR": {"ViewerDirectory": str(viewer)}}))


def test_registered_routes_serve_get_only(viewer):
    orthanc = FakeOrthanc()
    register(orthanc, viewer)
    assert set(orthanc.routes) == {"/ohif", "/ohif/(.*)"}

    output = _call(orthanc, "/ohif", "/ohif")  # Orthanc strips the trailing slash of /ohif/
    assert (output.body, output.mime) == (b"<html>index</html>", "text/html; charset=utf-8")
    assert output.headers["Cache-Control"] == "no-cache"

    output = _call(orthanc, "/ohif/(.*)", "/ohif/codec.wasm", groups=("codec.wasm",))
    assert (output.body, output.mime) == (b"\0asm", "application/wasm")
    assert "max-age" in output.headers["Cache-Control"]

    output = _call(orthanc, "/ohif/(.*)", "/ohif/viewer", method="POST", groups=("viewer",))
    assert output.allowed == "GET" and output.status == 405

    output = _call(orthanc, "/ohif/(.*)", "/ohif/../x.js", groups=("../x.js",))
    assert output.status == 400


def test_explorer_gets_an_open_in_ohif_button(viewer):
    orthanc = FakeOrthanc()
    register(orthanc, viewer)
    (script,) = orthanc.explorer
    assert "/ohif/viewer?StudyInstanceUIDs=" in script
    assert "#study" in script and "StudyInstanceUID" in script


def test_unbuilt_viewer_registers_nothing_and_says_so(tmp_path):
    orthanc = FakeOrthanc()
    assert register(orthanc, tmp_path / "none") is None
    assert orthanc.routes == {} and orthanc.explorer == []
    assert any("make -C viewer-extension build" in line for _, line in orthanc.lines)


def test_viewer_removed_after_start_is_a_404(viewer):
    orthanc = FakeOrthanc()
    register(orthanc, viewer)
    (viewer / "index.html").unlink()
    output = _call(orthanc, "/ohif/(.*)", "/ohif/viewer", groups=("viewer",))
    assert output.status == 404
