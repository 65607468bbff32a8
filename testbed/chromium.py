"""Debian Chromium, driven by Playwright, living inside a test network namespace.

Playwright starts the browser through a two-line wrapper that execs Chromium with
``ip netns exec``; it drives it over the pipe it started it with, so the test
process can stay in the host namespace while every packet Chromium sends stays in
the namespace. Shared by the e2e tests and the benchmark.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .netns import Namespace

CHROMIUM = os.environ.get("MPYC_WEBRTC_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # ICE over loopback: needs this flag *and* the camera/microphone permission below.
    "--allow-loopback-in-peer-connection",
]


def missing() -> str | None:
    """Why Chromium cannot be used here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


def launch(playwright, ns: Namespace | str, workdir: Path, *, secure_origin: str | None = None):
    """Chromium in namespace ``ns`` (a ``Namespace`` or a namespace's name).

    ``secure_origin``: an http:// origin to treat as secure, as a test stand-in for https
    (WebCrypto, which sealing needs, exists only in secure contexts).
    """
    name = ns if isinstance(ns, str) else ns.name
    wrapper = workdir / f"chromium-in-{name}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {name} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    flags = FLAGS + ([f"--unsafely-treat-insecure-origin-as-secure={secure_origin}"]
                     if secure_origin else [])
    return playwright.chromium.launch(executable_path=str(wrapper), headless=True, args=flags)


def new_context(browser, origin: str):
    """A fresh profile (like another person's browser) allowed to use loopback ICE."""
    context = browser.new_context()
    context.grant_permissions(["camera", "microphone"], origin=origin)
    return context
