"""Playwright + Debian Chromium inside a throw-away loopback-only network namespace.

The test process stays in the host namespace; Chromium is started through a small
wrapper that execs it with ``ip netns exec``, and Playwright drives it over the pipe
it was started with, so every packet Chromium sends stays in the namespace.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from netns import Namespace, Server, available

CHROMIUM = os.environ.get("MPYC_WEBRTC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # ICE over loopback: needs this flag *and* the camera/microphone permission below.
    "--allow-loopback-in-peer-connection",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in Path(item.fspath).parts:
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="module")
def namespace():
    if (why := available()) is not None:
        pytest.fail(f"the browser tests need network namespaces, but {why}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    with Namespace("mwe") as ns:
        yield ns


@pytest.fixture(scope="module")
def server(namespace):
    return Server(namespace, 8080)


@pytest.fixture(scope="module")
def browser(namespace, tmp_path_factory):
    wrapper = tmp_path_factory.mktemp("chromium") / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(wrapper), headless=True,
                                             args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, server):
    """Pages in fresh contexts (like separate people), allowed to use loopback ICE."""
    contexts = []

    def make():
        context = browser.new_context()
        context.grant_permissions(["camera", "microphone"], origin=server.url)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
