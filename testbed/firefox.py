"""Debian's Firefox ESR, driven by Playwright, living inside a test network namespace.

The second browser engine beside ``testbed.chromium``, with the same API. Playwright drives
the system Firefox over WebDriver BiDi (channel ``moz-firefox``: no browser download). That
protocol runs over a WebSocket on Firefox's loopback, which in a namespace is out of the
driver's reach: Playwright starts Firefox through ``testbed/firefox_in_netns.py``, which
relays just that connection (see there), so every packet Firefox sends stays in the
namespace. Shared by the e2e tests.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .netns import Namespace, ensure_default_route

FIREFOX = os.environ.get("MPYC_WEBRTC_FIREFOX", "/usr/bin/firefox-esr")
RELAY = Path(__file__).resolve().parent / "firefox_in_netns.py"
PREFS: dict[str, bool | int | str] = {
    # ICE over loopback: these two prefs *and* a default route (netns.ensure_default_route);
    # without the prefs Firefox offers no candidate, or only an obfuscated .local name.
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    # Quiet and offline: nothing to fetch at start-up (the namespace has no way out anyway).
    "browser.shell.checkDefaultBrowser": False,
    "app.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
}
#: Turns JavaScript Promise Integration off, as in browsers that lack it (Safari, Chrome on
#: Android): WebAssembly.Suspending is gone and Pyodide's can_run_sync() says False.
NO_JSPI = {"javascript.options.wasm_js_promise_integration": False}


def missing() -> str | None:
    """Why Firefox cannot be used here, or None."""
    if not os.access(FIREFOX, os.X_OK):
        return f"Firefox is not installed at {FIREFOX} (apt-get install -y firefox-esr)"
    return None


def secure_origin_prefs(origin: str) -> dict[str, bool | int | str]:
    """Prefs that make Firefox treat ``origin`` (http://HOST[:PORT]) as a secure context.

    ``dom.securecontext.allowlist`` is Firefox's counterpart of Chromium's
    ``--unsafely-treat-insecure-origin-as-secure``, but it lists host names without
    scheme or port: every http:// origin on that host counts as potentially trustworthy.
    A secure context is what cross-origin isolation needs too: the server's COOP/COEP
    headers then make ``crossOriginIsolated`` true (SharedArrayBuffer).
    """
    host = urlsplit(origin).hostname
    if not host:
        raise ValueError(f"not an origin: {origin!r}")
    return {"dom.securecontext.allowlist": host}


def launch(playwright, ns: Namespace | str, workdir: Path, *, jspi: bool = True,
           secure_origin: str | None = None):
    """Firefox in namespace ``ns`` (a ``Namespace`` or a namespace's name).

    The namespace gets a default route over ``lo`` if it has none (Firefox needs one to
    gather ICE candidates). ``workdir`` holds the launch wrapper and Firefox's HOME: Firefox
    refuses to start in a HOME that another user owns (as /root may be to a CI runner's
    user), so it gets one of its own. ``jspi=False``: a Firefox without JSPI.
    ``secure_origin``: an http:// origin to treat as secure, as a test stand-in for https
    (as ``testbed.chromium.launch``'s; Firefox applies it to the origin's whole host).
    """
    name = ns if isinstance(ns, str) else ns.name
    ensure_default_route(name)
    home = workdir / f"firefox-home-{name}"
    home.mkdir(exist_ok=True)
    wrapper = workdir / f"firefox-in-{name}"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(RELAY))}"
                       f' {shlex.quote(name)} {shlex.quote(FIREFOX)} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return playwright.firefox.launch(
        channel="moz-firefox", executable_path=str(wrapper), headless=True,
        env={**os.environ, "HOME": str(home)},
        firefox_user_prefs=PREFS | ({} if jspi else NO_JSPI)
        | (secure_origin_prefs(secure_origin) if secure_origin else {}))


def new_context(browser, origin: str):
    """A fresh profile (like another person's browser). ``origin`` is unused: Firefox allows
    loopback ICE by its prefs, not by a permission (it has no camera permission to grant to
    an origin through Playwright), but the signature matches ``testbed.chromium``'s."""
    del origin
    return browser.new_context()
