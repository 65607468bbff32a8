"""For every test under tests/ and e2e/: the one rule for tests that need root, and a
configuration directory of each test's own.

A test marked ``netns`` (it creates network namespaces) is skipped, with the reason,
when the suite runs without root, and fails instead under ``CI=true``; see
``testbed.netns.rule_for_tests``.
"""

from __future__ import annotations

import pytest

from testbed import netns


@pytest.hookimpl(trylast=True)  # after e2e/conftest.py has marked its tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    verdict = netns.rule_for_tests()
    if verdict is not None and verdict[0] == "skip":
        for item in items:
            if item.get_closest_marker("netns") is not None:
                # A mark, not pytest.skip(): the report names each test, not this file.
                item.add_marker(pytest.mark.skip(reason=verdict[1]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is None:
        return
    verdict = netns.rule_for_tests()
    if verdict is not None and verdict[0] == "fail":
        pytest.fail(verdict[1], pytrace=False)


@pytest.fixture(autouse=True)
def own_config_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Native peers keep their identity key and whom they computed with in the user's
    configuration directory: each test gets its own (and its peers, which inherit the
    environment), so no test writes to the home of whoever runs the suite, and no test
    finds the keys another made."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def redis_server():
    """A real ``redis-server`` (``testbed.redis_server``) for the whole run: tests of
    shared sessions. Without it: skipped, or failed under ``CI=true``."""
    from testbed.redis_server import MISSING, RedisServer

    if MISSING:
        if netns.in_ci():
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The Redis to share sessions through, emptied for each test."""
    redis_server.cli("flushall")
    return redis_server.url
