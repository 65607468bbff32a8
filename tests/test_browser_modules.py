"""What runs where: the browser's Python is an explicit list, and none of it needs what only
a native party has (aiortc, aiohttp, cryptography); the rest of the shared core needs no
aiortc or aiohttp either."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from signaling import assets

REPO = Path(__file__).resolve().parent.parent
NATIVE_ONLY = ("aiortc", "aioice", "aiohttp", "av", "cryptography")


def browser_modules() -> tuple[list[str], list[Path]]:
    """(modules to import, program scripts) of the browser's archive."""
    modules, scripts = [], []
    for name, path in assets.browser_files():
        dotted = name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        if dotted.startswith("mpyc_webrtc.programs.") and dotted.count(".") == 2:
            scripts.append(path)  # an MPyC program: it runs when imported
        else:
            modules.append(dotted)
    return modules, scripts


def import_without(blocked: tuple[str, ...], modules: list[str]) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print('ok')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO)


def test_every_browser_module_imports_without_native_packages():
    modules, _ = browser_modules()
    assert {"py_worker.party", "py_worker.channel", "mpyc_webrtc.mesh",
            "mpyc_webrtc.programs"} <= set(modules)
    done = import_without(NATIVE_ONLY, modules)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_programs_import_only_what_a_browser_has():
    _, scripts = browser_modules()
    assert {p.stem for p in scripts} >= {"average", "sum", "santa"}
    for path in scripts:
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom)}
        assert not names & set(NATIVE_ONLY), path


def test_the_archive_holds_mpyc_and_exactly_the_browser_modules():
    with zipfile.ZipFile(io.BytesIO(assets.build_archive())) as archive:
        names = set(archive.namelist())
    ours = {name for name in names if not name.startswith("mpyc/")}
    assert ours == {name for name, _ in assets.browser_files()}
    assert "mpyc/runtime.py" in names
    assert not any(name.startswith("mpyc_webrtc/native/") for name in names)
    assert "mpyc_webrtc/sealing.py" not in names


def test_the_shared_core_needs_no_aiortc_or_aiohttp():
    core = [f"mpyc_webrtc.{p.stem}" for p in (REPO / "mpyc_webrtc").glob("*.py")
            if p.stem != "__init__"]
    done = import_without(("aiortc", "aioice", "aiohttp", "av"), core)
    assert done.returncode == 0, done.stderr


def test_native_backend_never_defaults_to_a_public_stun_server():
    from mpyc_webrtc.native.ice import rtc_configuration

    assert rtc_configuration([]).iceServers == []
    config = rtc_configuration([{"urls": "turn:10.0.0.1:3478", "username": "u",
                                 "credential": "p"}])
    assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [
        ("turn:10.0.0.1:3478", "u", "p")]
