"""The test bed's rule for tests that need root (testbed.netns.rule_for_tests, applied by
conftest.py to every test marked ``netns``): skipped without root, failed under CI=true."""

from __future__ import annotations

import os

import pytest

from testbed import netns


def test_without_root_a_namespace_test_is_skipped_with_the_reason():
    action, reason = netns.rule_for_tests(root=False, ci=False)
    assert action == "skip"
    assert reason.startswith(netns.NEEDS_ROOT)


def test_without_root_under_ci_a_namespace_test_fails():
    action, reason = netns.rule_for_tests(root=False, ci=True)
    assert action == "fail"
    assert reason.startswith(netns.NEEDS_ROOT) and "CI=true" in reason


@pytest.mark.parametrize("value, ci", [("true", True), ("True", True), ("1", True),
                                       ("false", False), ("0", False), ("", False)])
def test_ci_is_what_the_environment_says(value, ci):
    assert netns.in_ci({"CI": value}) is ci
    assert netns.in_ci({}) is False


@pytest.mark.parametrize("ci, action", [(None, "skip"), ("true", "fail")])
def test_the_defaults_are_this_process_and_its_environment(monkeypatch, ci, action):
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert netns.rule_for_tests()[0] == action
