"""The core must run under Pyodide, where aiortc and aiohttp do not exist."""

import subprocess
import sys

CORE = ["mpyc_webrtc", "mpyc_webrtc.wire", "mpyc_webrtc.session", "mpyc_webrtc.transport",
        "mpyc_webrtc.mesh", "mpyc_webrtc.memory", "mpyc_webrtc.programs", "mpyc_webrtc.ice"]


def test_core_imports_without_aiortc_or_aiohttp():
    code = (
        "import sys\n"
        "for name in ('aiortc', 'aioice', 'aiohttp', 'av', 'cryptography'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        f"for name in {CORE!r}:\n"
        "    __import__(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_native_backend_never_defaults_to_a_public_stun_server():
    from mpyc_webrtc.native import rtc_configuration

    assert rtc_configuration([]).iceServers == []
    config = rtc_configuration([{"urls": "turn:10.0.0.1:3478", "username": "u",
                                 "credential": "p"}])
    assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [
        ("turn:10.0.0.1:3478", "u", "p")]
