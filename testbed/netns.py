"""Throw-away Linux network namespaces for tests and benchmarks that open WebRTC links.

WebRTC gathers every interface, so nothing that opens a peer connection may run
in the machine's own namespace: each scenario gets a namespace with only ``lo``
up, runs the signaling server and the parties inside it, and deletes it after.
Every process is started through ``ip netns exec`` (which execs the command, so
the recorded PID is the command's) and ended by that PID.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_counter = itertools.count()


NEEDS_ROOT = "creating network namespaces needs root"


def available() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return NEEDS_ROOT
    return None


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment says this is a CI run: ``CI=true`` (or ``1``), as CI
    services set it."""
    return environ.get("CI", "").strip().lower() in ("true", "1")


def rule_for_tests(*, root: bool | None = None, ci: bool | None = None
                   ) -> tuple[str, str] | None:
    """The one rule for tests that need network namespaces (pytest marker ``netns``;
    the repository's conftest.py applies it before each such test).

    None when they can run. Otherwise ``("skip", reason)`` without root, so the rest of
    the suite runs for anyone; ``("fail", reason)`` without root under ``CI=true``, so a
    CI machine that cannot run them is never green, and as root without iproute2
    (``./run.sh test`` installs it). ``root`` and ``ci`` default to this process's.
    """
    root = os.geteuid() == 0 if root is None else root
    ci = in_ci() if ci is None else ci
    if not root:
        if ci:
            return "fail", f"{NEEDS_ROOT}, and CI=true: a CI run must not skip this test"
        return "skip", f"{NEEDS_ROOT} (run the tests as root to include it)"
    return None if (why := available()) is None else ("fail", why)


def ensure_default_route(name: str) -> None:
    """Give namespace ``name`` a default route over ``lo`` from 127.0.0.1, unless it has one.

    Firefox gathers ICE candidates only on an interface with a default route: in a namespace
    with only ``lo`` it would offer none, and with a route lacking ``src`` only 0.0.0.0.
    A route over ``lo`` takes nothing out of the namespace (a packet for an address that is
    not local comes back in on ``lo`` and is dropped, as the namespace forwards nothing). A
    namespace that has a default route already (a LAN behind a simulated router) keeps it.
    """
    shown = subprocess.run(["ip", "-n", name, "route", "show", "default"], check=True,
                           capture_output=True, text=True).stdout
    if not shown.strip():
        subprocess.run(["ip", "-n", name, "route", "add", "default", "dev", "lo",
                        "src", "127.0.0.1"], check=True)


class Namespace:
    def __init__(self, prefix: str = "mwt"):
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def popen(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("cwd", REPO)
        proc = subprocess.Popen(self.command(cmd), **kwargs)
        self.processes.append(proc)
        return proc

    def run(self, cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("cwd", REPO)
        return subprocess.run(self.command(cmd), timeout=timeout, capture_output=True,
                              text=True, **kwargs)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


class Server:
    """``mpyc-webrtc-server`` running inside a namespace."""

    def __init__(self, ns: Namespace, port: int = 8080, *extra: str):
        self.ns = ns
        self.url = f"http://127.0.0.1:{port}"
        self.proc = ns.popen([str(BIN / "mpyc-webrtc-server"), "--port", str(port), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()  # printed once the port is bound
        if not first.startswith("mpyc-webrtc server on"):
            raise RuntimeError(f"server did not start: {first!r} {self.proc.stderr.read()}")
        # Keep reading its output: a full pipe would block the server inside logging.
        self.log: collections.deque[str] = collections.deque(maxlen=2000)
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self.log.extend, args=(pipe,), daemon=True).start()

    def create(self, parties: int, *program: str) -> str:
        """Create a session with the peer CLI; returns the join URL (with its secret
        fragment ``#k=...&p=...``). ``program``: ``create``'s options (``--program NAME``
        or ``--program-file FILE``, ``--no-privacy``, ...; ``--args ...`` last). Built-in
        programs need at least 3 parties; less than full privacy needs ``--no-privacy``
        here and ``--accept-no-privacy`` from each peer, an uploaded program
        ``--trust-program``."""
        done = self.ns.run([str(BIN / "mpyc-webrtc-peer"), "create", self.url,
                            "--parties", str(parties), *program])
        if done.returncode != 0:
            raise RuntimeError(f"create failed: {done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def info(self, join_url: str) -> dict:
        """``GET /api/sessions/ID``, fetched from inside the namespace."""
        session = session_id(join_url)
        done = self.ns.run([sys.executable, "-c",
                            "import sys, urllib.request; print(urllib.request.urlopen("
                            "sys.argv[1]).read().decode())",
                            f"{self.url}/api/sessions/{session}"])
        if done.returncode != 0:
            raise RuntimeError(f"session lookup failed: {done.stderr}")
        return json.loads(done.stdout)

    def members(self, join_url: str) -> tuple[int, list[int]]:
        """How many places are taken, and which parties are connected (a party that is
        reconnecting holds a place but is not connected)."""
        info = self.info(join_url)
        return info["joined"], sorted(m["pid"] for m in info["members"])

    def wait_joined(self, join_url: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.info(join_url)["joined"] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} parties joined within {timeout} s")
            time.sleep(0.1)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


class TamperProxy:
    """``testbed/tamper_proxy.py`` in a namespace, in front of ``upstream`` (a ``Server``)."""

    def __init__(self, ns: Namespace, upstream: Server, mode: str, port: int = 8081):
        self.ns = ns
        self.url = f"http://127.0.0.1:{port}"
        self.upstream = upstream
        self.proc = ns.popen([sys.executable, "-m", "testbed.tamper_proxy",
                              "--listen", f"127.0.0.1:{port}", "--upstream", upstream.url,
                              "--mode", mode],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("tamper proxy on "):
            raise RuntimeError(f"proxy did not start: {first!r} {self.proc.stderr.read()}")
        self.log: collections.deque[str] = collections.deque(maxlen=2000)
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self.log.extend, args=(pipe,), daemon=True).start()

    def logged(self, fragment: str, timeout: float = 10.0) -> bool:
        """Whether the proxy said ``fragment`` (in a line) within ``timeout`` seconds: its
        lines are read by a thread, and a party may act on a change before that thread read
        the line that announced it."""
        deadline = time.monotonic() + timeout
        while not any(fragment in line for line in list(self.log)):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def link(self, join_url: str) -> str:
        """The same join link, through the proxy."""
        return join_url.replace(self.upstream.url, self.url, 1)


def session_id(join_url: str) -> str:
    """The session id of a join link (``.../join/ID#k=...&p=...``)."""
    return join_url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[1]


def start_peer(ns: Namespace, join_url: str, *args: str) -> subprocess.Popen:
    """A ``mpyc-webrtc-peer join`` process (loopback candidates allowed: test only)."""
    return ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", join_url, "--allow-loopback",
                     *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


#: How long a native peer started by a test may take to finish.
NATIVE_TIMEOUT = 120


def native_output(peer: subprocess.Popen) -> str:
    """What a ``start_peer`` process printed, once it ended; it must have ended well."""
    out, err = peer.communicate(timeout=NATIVE_TIMEOUT)
    assert peer.returncode == 0, f"native peer failed ({peer.returncode}):\n{err[-3000:]}"
    return out.strip()


class StderrLines:
    """A process's stderr, read line by line as it comes (a thread reads it)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The first line that contains ``text``, once printed."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, f"never printed {text!r}:\n" + "\n".join(
                self.lines[-80:])
            time.sleep(0.1)


@dataclass
class PeerRun:
    """How a native peer's process ended."""

    code: int
    out: str
    err: str

    @property
    def last(self) -> str:
        """Its last line on stderr (where it says why it stopped)."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""

    @property
    def pid(self) -> int:
        """The pid it joined as (it says "party N", counting from 1 as people do)."""
        found = re.search(r"^Joined session \S+ as party (\d+)", self.err, re.M)
        assert found, self.err
        return int(found.group(1)) - 1

    def lines(self) -> list[str]:
        return self.err.splitlines()
