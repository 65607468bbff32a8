"""The test bed's rule for tests that need root (testbed.netns.rule_for_tests, applied by
conftest.py to every test marked ``netns``): skipped without root, failed under CI=true.
And what Firefox needs in a namespace: a default route, and its debugging port relayed out
(testbed/firefox_in_netns.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from testbed import firefox, netns


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


@pytest.mark.netns
def test_a_bare_namespace_gets_a_loopback_default_route_and_one_with_a_route_keeps_it():
    """Firefox gathers ICE candidates only with a default route (testbed.firefox)."""
    with netns.Namespace("mwd") as ns:
        netns.ensure_default_route(ns.name)
        assert ns.run(["ip", "route", "show", "default"]).stdout.split() == [
            "default", "dev", "lo", "scope", "link", "src", "127.0.0.1"]
        netns.ensure_default_route(ns.name)  # a second time changes nothing
        assert len(ns.run(["ip", "route", "show", "default"]).stdout.splitlines()) == 1
    with netns.Namespace("mwd") as ns:
        subprocess.run(["ip", "-n", ns.name, "route", "add", "default", "dev", "lo",
                        "metric", "7"], check=True)
        netns.ensure_default_route(ns.name)
        assert ns.run(["ip", "route", "show", "default"]).stdout.split() == [
            "default", "dev", "lo", "scope", "link", "metric", "7"]


# Stands in for Firefox: listens where --remote-debugging-port says, says so as Firefox
# does, answers one connection, and tells which network namespace it ran in.
FAKE_FIREFOX = r"""
import os, socket, sys
port = int([a for a in sys.argv if a.startswith("--remote-debugging-port=")][0].split("=")[1])
server = socket.create_server(("127.0.0.1", port))
print(f"netns {os.stat('/proc/self/ns/net').st_ino}", file=sys.stderr, flush=True)
print(f"WebDriver BiDi listening on ws://127.0.0.1:{port}", file=sys.stderr, flush=True)
connection, _ = server.accept()
connection.sendall(connection.recv(100).upper())
connection.close()
sys.exit(3)
"""


@pytest.mark.netns
def test_firefox_runs_in_the_namespace_with_its_debugging_port_relayed_out():
    with netns.Namespace("mwf") as ns:
        browser = subprocess.Popen(
            [sys.executable, str(firefox.RELAY), ns.name, sys.executable, "-c", FAKE_FIREFOX,
             "--remote-debugging-port=0", "--headless"], stderr=subprocess.PIPE, text=True)
        try:
            assert browser.stderr is not None
            inode = int(browser.stderr.readline().split()[1])
            assert inode == os.stat(f"/run/netns/{ns.name}").st_ino
            listening = browser.stderr.readline()
            port = int(listening.rsplit(":", 1)[1])
            assert listening == f"WebDriver BiDi listening on ws://127.0.0.1:{port}\n"
            assert port != 0
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(b"session")  # from the host's namespace
                assert connection.recv(100) == b"SESSION"
            assert browser.wait(10) == 3  # the browser's exit status
        finally:
            if browser.poll() is None:
                browser.kill()  # the relay this test started, by its pid
                browser.wait()
