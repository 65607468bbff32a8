"""What the server hands to browsers: the pages, Pyodide, and the Python they run.

- ``/web/...``            the pages and their JS (``web/`` in the repository)
- ``/pyodide/VERSION/...`` the pinned npm ``pyodide`` package (``node_modules/pyodide``)
- ``/vendor/NAME/...``      the pinned npm packages the pages use (syntax highlighting, the
  code editor), from ``node_modules``; only those in ``VENDORED``
- ``/assets/python-HASH.zip`` one archive of the pure-Python code a browser party
  imports: ``mpyc`` (from the installed distribution, the same MPyC the native peers
  run) and the modules of ours in ``BROWSER_MODULES`` and ``BROWSER_PACKAGES``, built when
  the server starts, so it always matches the code on disk.

Versioned and hashed paths never change their content, so browsers may keep them for
a year without asking again; pages revalidate (ETag / Last-Modified answer 304).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import mimetypes
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger("signaling.assets")

REPO = Path(__file__).resolve().parent.parent
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# Python 3.11's table lacks these; browsers refuse module scripts of the wrong type.
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/wasm", ".wasm")

#: What of this repository a browser party runs (in its worker, under Pyodide), beside all
#: of MPyC: these modules, and every module of these packages. Nothing else goes in the
#: archive; tests/test_browser_modules.py imports each one with aiortc, aiohttp and
#: cryptography made unimportable.
BROWSER_MODULES = ("mpyc_webrtc", "mpyc_webrtc.wire", "mpyc_webrtc.sentences",
                   "mpyc_webrtc.launch", "mpyc_webrtc.transport", "mpyc_webrtc.recovery",
                   "mpyc_webrtc.mesh")
BROWSER_PACKAGES = ("mpyc_webrtc.programs", "py_worker")


#: npm packages (pinned in package.json) that pages may load from /vendor/NAME/.
VENDORED = ("prismjs", "codejar", "qrcode-generator")


@dataclass
class Assets:
    web_dir: Path
    pyodide_dir: Path | None
    pyodide_version: str | None
    archive: bytes
    archive_name: str
    node_modules: Path = REPO / "node_modules"

    @property
    def pyodide_url(self) -> str | None:
        return f"/pyodide/{self.pyodide_version}/" if self.pyodide_version else None

    def manifest(self) -> dict[str, object]:
        return {
            "pyodide": self.pyodide_url,
            "python": f"/assets/{self.archive_name}",
            "missing": None if self.pyodide_url else (
                "This server was installed without the browser assets (the npm package "
                "pyodide); browsers cannot take part. Set it up with ./run.sh serve."),
        }


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # without importing: mpyc parses sys.argv
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def browser_files() -> list[tuple[str, Path]]:
    """(name in the archive, file) for every module of ours a browser party runs."""
    def source(dotted: str) -> tuple[Path, Path]:
        """(the folder holding the top-level package, the module or package's path)."""
        top, *rest = dotted.split(".")
        base = REPO if top == "py_worker" else _package_dir(top).parent  # py_worker: not installed
        return base, base.joinpath(top, *rest)

    files = []
    for module in BROWSER_MODULES:
        base, path = source(module)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        files.append((path.relative_to(base).as_posix(), path))
    for package in BROWSER_PACKAGES:
        base, root = source(package)
        files += [(path.relative_to(base).as_posix(), path) for path in sorted(root.glob("*.py"))]
    return files


def build_archive() -> bytes:
    """A zip of every pure-Python module a browser party needs, with fixed timestamps
    so the same code gives the same bytes (and the same cache-busting hash)."""
    mpyc = _package_dir("mpyc")
    files = [(f"mpyc/{path.relative_to(mpyc).as_posix()}", path)
             for path in sorted(mpyc.rglob("*.py")) if "__pycache__" not in path.parts]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files + browser_files():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def load(web_dir: Path | None = None, pyodide_dir: Path | None = None) -> Assets:
    web_dir = web_dir or REPO / "web"
    pyodide_dir = pyodide_dir or REPO / "node_modules" / "pyodide"
    version = None
    try:
        version = json.loads((pyodide_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        log.warning("no Pyodide at %s: browsers cannot take part (run npm ci)", pyodide_dir)
        pyodide_dir = None
    archive = build_archive()
    name = f"python-{hashlib.sha256(archive).hexdigest()[:16]}.zip"
    return Assets(web_dir, pyodide_dir, version, archive, name, pyodide_dir.parent
                  if pyodide_dir is not None else REPO / "node_modules")


def _file(root: Path, relative: str, cache: str) -> web.StreamResponse:
    try:
        path = (root / relative).resolve()
        found = path.is_relative_to(root.resolve()) and path.is_file()
    except (ValueError, OSError):  # a NUL byte in the name, a name too long, ...
        found = False
    if not found:
        raise web.HTTPNotFound(text="No such file.\n")
    return web.FileResponse(path, headers={"Cache-Control": cache})


ASSETS = web.AppKey("assets", Assets)


async def pyodide_file(request: web.Request) -> web.StreamResponse:
    assets = request.app[ASSETS]
    if assets.pyodide_dir is None or request.match_info["version"] != assets.pyodide_version:
        raise web.HTTPNotFound(text="This Pyodide version is not served here.\n")
    return _file(assets.pyodide_dir, request.match_info["path"], IMMUTABLE)


async def web_file(request: web.Request) -> web.StreamResponse:
    return _file(request.app[ASSETS].web_dir, request.match_info["path"], REVALIDATE)


async def vendor_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in VENDORED:
        raise web.HTTPNotFound(text="No such package.\n")
    return _file(request.app[ASSETS].node_modules / name, request.match_info["path"],
                 REVALIDATE)


async def python_archive(request: web.Request) -> web.Response:
    assets = request.app[ASSETS]
    if request.match_info["name"] != assets.archive_name:
        raise web.HTTPNotFound(text="This archive is out of date; reload the page.\n")
    return web.Response(body=assets.archive, content_type="application/zip",
                        headers={"Cache-Control": IMMUTABLE})


async def manifest(request: web.Request) -> web.Response:
    return web.json_response(request.app[ASSETS].manifest(),
                             headers={"Cache-Control": REVALIDATE})


def add_routes(app: web.Application, assets: Assets) -> None:
    app[ASSETS] = assets
    app.router.add_get("/pyodide/{version}/{path:.+}", pyodide_file)
    app.router.add_get("/web/{path:.+}", web_file)
    app.router.add_get("/vendor/{name}/{path:.+}", vendor_file)
    app.router.add_get("/assets/{name}", python_archive)
    app.router.add_get("/api/assets", manifest)
