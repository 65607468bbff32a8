"""Playwright + Debian Chromium (and Firefox ESR) inside a throw-away loopback-only network
namespace.

The test process stays in the host namespace; Chromium is started through a small
wrapper that execs it with ``ip netns exec``, and Playwright drives it over the pipe
it was started with, so every packet Chromium sends stays in the namespace. Firefox is
driven over a WebSocket instead, relayed out of the namespace (``testbed.firefox``).
One Playwright per module drives both, so a test can mix the two engines in one session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from testbed import chromium, firefox
from testbed.netns import Namespace, Server, in_ci


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
def playwright():
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright, namespace, tmp_path_factory):
    browser = chromium.launch(playwright, namespace, tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


def need_firefox() -> None:
    """Firefox or the reason: ``./run.sh test`` installs it, so under CI=true a missing one
    fails the test (a CI machine without it is never green); elsewhere the test skips."""
    if (why := firefox.missing()) is not None:
        if in_ci():
            pytest.fail(f"{why}; CI=true: a CI run must not skip this test")
        pytest.skip(why)


@pytest.fixture(scope="module")
def firefox_browser(playwright, namespace, tmp_path_factory):
    """Firefox ESR in the module's namespace (with JSPI, as shipped)."""
    need_firefox()
    browser = firefox.launch(playwright, namespace, tmp_path_factory.mktemp("firefox"))
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


@pytest.fixture
def new_firefox_page(firefox_browser, server):
    """Like ``new_page``, in Firefox."""
    contexts = []

    def make():
        context = firefox.new_context(firefox_browser, server.url)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
