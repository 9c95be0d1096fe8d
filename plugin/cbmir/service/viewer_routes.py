"""Serves the built OHIF viewer (viewer-extension/dist) under /ohif/ from Orthanc, same origin as
DICOMweb and /cbmir/, and adds a button to Orthanc Explorer's study page.

Why same origin: Orthanc has no CORS and its HTTP basic auth then covers the viewer, DICOMweb and the
CBMIR API alike. Why `resolve_request` is pure: the rules (Orthanc strips trailing slashes, DICOM UIDs
in SPA routes contain dots, traversal is refused) are what can go wrong, so unit tests drive them
without Orthanc.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cbmir.service.gateway import send_buffer, send_json, send_method_not_allowed

PREFIX = "/ohif"

# Only these count as files; any other last segment is an SPA route (e.g. /ohif/viewer, or a
# route holding a StudyInstanceUID such as 1.2.840.113619...).
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
# Names that change with each build: the rest must be revalidated (index.html, app-config.js, ...).
NO_CACHE = {"index.html", "app-config.js", "manifest.json", "sw.js", "init-service-worker.js"}


@dataclass(frozen=True)
class Resolved:
    """What to answer: `status` 200 with `path` and `mime`, or an error status and message."""
    status: int
    path: Path | None = None
    mime: str | None = None
    message: str = ""


def resolve_request(root: Path, relative: str) -> Resolved:
    """Map the part of the URI after /ohif/ to a file of `root`.

    Known asset extensions name files (404 when missing); anything else is an SPA route and gets
    index.html. Empty, '.' or '..' segments, backslashes and NULs are refused with 400.
    """
    relative = relative or ""
    if "\\" in relative or "\x00" in relative or relative.startswith("/"):
        return Resolved(400, message="bad path")
    parts = [part for part in relative.split("/")]
    if relative and any(part in ("", ".", "..") for part in parts):
        return Resolved(400, message="bad path")
    root = root.resolve()
    index = root / "index.html"
    if not index.is_file():
        return Resolved(404, message=f"the viewer is not built ({root}): run `make -C viewer-extension build`")
    suffix = PurePosixPath(parts[-1]).suffix.lower() if relative else ""
    if suffix not in MIME_TYPES:
        return Resolved(200, index, MIME_TYPES[".html"])
    try:
        candidate = root.joinpath(*parts).resolve()
        if root not in candidate.parents:
            return Resolved(400, message="bad path")
        if not candidate.is_file():
            return Resolved(404, message=f"no such file: {relative}")
    except (OSError, ValueError):  # a name too long for the filesystem, ...: no such file
        return Resolved(404, message="no such file")
    return Resolved(200, candidate, MIME_TYPES[suffix])


def cache_control(path: Path) -> str:
    return "no-cache" if path.name in NO_CACHE else "public, max-age=86400"


def explorer_script(prefix: str = PREFIX) -> str:
    """JavaScript for Orthanc Explorer: an 'Open in OHIF' button on the study page."""
    return """
(function () {
  function openInOhif() {
    var study = $.mobile.pageData && $.mobile.pageData.uuid;
    if (!study) { return; }
    $.ajax({
      url: '../studies/' + study, dataType: 'json', cache: false,
      success: function (s) {
        var uid = s.MainDicomTags.StudyInstanceUID;
        window.open('..%(prefix)s/viewer?StudyInstanceUIDs=' + encodeURIComponent(uid), '_blank');
      }
    });
  }
  $('#study').live('pagebeforecreate', function () {
    var button = $('<a>', { id: 'cbmir-open-ohif', href: '#', 'data-role': 'button', 'data-icon': 'search',
      'data-theme': 'e', text: 'Open in OHIF (similar cases)' });
    button.insertBefore($('#study-delete').parent().parent());
    button.click(function (event) { event.preventDefault(); openInOhif(); });
  });
})();
""" % {"prefix": prefix}


def register_static_routes(gateway, config) -> Path | None:
    """Serve the viewer under /ohif/ (GET only) and extend Orthanc Explorer; returns the directory.

    Nothing is registered when the viewer is not built: /ohif/ then stays free for a site's own
    viewer (e.g. the Orthanc OHIF plugin, which uses the same /ohif/viewer?StudyInstanceUIDs= URLs).
    """
    root = config.viewer_directory  # CBMIR.ViewerDirectory (cbmir.service.config)
    if not (root / "index.html").is_file():
        gateway.log.warning(f"CBMIR: no viewer in {root}: not serving /ohif/ "
                           "(run `make -C viewer-extension build` to serve it)")
        return None

    def serve(output, uri, **request):
        if request.get("method") != "GET":
            send_method_not_allowed(output, "GET")
            return
        groups = request.get("groups") or ()
        resolved = resolve_request(root, groups[0] if groups and groups[0] else "")
        if resolved.status != 200:  # JSON like every other error; never echoed as HTML
            send_json(output, resolved.status, {"error": resolved.message, "status": resolved.status})
            return
        send_buffer(output, resolved.path.read_bytes(), resolved.mime,
                    {"Cache-Control": cache_control(resolved.path)})

    gateway.register_route(PREFIX, serve)
    gateway.register_route(PREFIX + "/(.*)", serve)
    gateway.extend_explorer(explorer_script())
    gateway.log.info(f"CBMIR: OHIF viewer served from {root} at {PREFIX}/")
    return root
