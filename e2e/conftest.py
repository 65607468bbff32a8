"""Playwright + Debian Chromium inside a throw-away loopback-only network namespace.

The test process stays in the host namespace; Chromium is started through a small
wrapper that execs it with ``ip netns exec``, and Playwright drives it over the pipe
it was started with, so every packet Chromium sends stays in the namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from testbed import chromium
from testbed.netns import Namespace, Server


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in Path(item.fspath).parts:
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="module")
def namespace():
    if (why := chromium.missing()) is not None:
        pytest.fail(why)
    with Namespace("mwe") as ns:
        yield ns


@pytest.fixture(scope="module")
def server(namespace):
    return Server(namespace, 8080)


@pytest.fixture(scope="module")
def browser(namespace, tmp_path_factory):
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright, namespace, tmp_path_factory.mktemp("chromium"))
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, server):
    """Pages in fresh contexts (like separate people), allowed to use loopback ICE."""
    contexts = []

    def make():
        context = chromium.new_context(browser, server.url)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
