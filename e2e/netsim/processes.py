"""Commands and processes of the simulated internet, shared by ``internet.py`` and
``wireguard.py``: running commands (one, or several at once), the record of a started
process, and ending recorded processes by PID without ever hitting a recycled one.

A process is only signalled while its /proc cmdline and start time still match what
was recorded when it was started (``matches``). Everything reads /proc directly:
no ``ps``, no ``ip netns pids``, no fork per question.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns`` keeps its named namespaces."""
TERM_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL in ``terminate``."""
KILL_GRACE = 2.0
"""Seconds ``terminate`` waits after SIGKILL."""


class NetsimError(RuntimeError):
    """Building or tearing down the simulation failed."""


@dataclass
class ProcessRecord:
    """A process started inside a namespace, as the state file keeps it."""

    role: str
    ns: str
    pid: int
    argv: list[str]
    """What was started: ``ip netns exec NS CMD...``."""
    cmd: list[str]
    """What ``ip`` execs: the cmdline we expect in /proc once it has."""
    start: int
    """/proc/PID/stat start time: with the cmdline, it tells a recycled PID apart."""
    popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        return {"role": self.role, "ns": self.ns, "pid": self.pid, "argv": self.argv,
                "cmd": self.cmd, "start": self.start}


def proc_cmdline(pid: int) -> list[str] | None:
    """pid's command line, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks), or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[19])


def alive(pid: int) -> bool:
    """Whether pid is a process that has not exited (zombies count as exited)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def matches(rec: ProcessRecord) -> bool:
    """Whether rec.pid is still the process we started (not a recycled PID)."""
    stat = proc_stat(rec.pid)
    if stat is None or stat[0] in ("Z", "X") or stat[1] != rec.start:
        return False
    actual = proc_cmdline(rec.pid)
    if not actual:
        return False
    # Before ip has exec'd the command, the cmdline is ip's own; after, it is the
    # command's, with the interpreter in front for a script with a shebang line.
    return actual == rec.argv or actual[-len(rec.cmd):] == rec.cmd


def _ns_inode(ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / ns)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_namespaces(namespaces: Iterable[str]) -> dict[int, str]:
    """Live processes whose network namespace is one of these: {pid: namespace}.

    The same as ``ip netns pids NS`` for each, without a fork per namespace.
    """
    wanted = {ino: ns for ns in namespaces if (ino := _ns_inode(ns)) is not None}
    found: dict[int, str] = {}
    if not wanted:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        ns = wanted.get((st.st_dev, st.st_ino))
        if ns is not None and alive(int(entry)):
            found[int(entry)] = ns
    return found


def run_command(argv: list[str], stdin: str | None = None, timeout: float = 30) -> str:
    """Run a command to completion; its stdout, or NetsimError naming what failed."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise NetsimError(f"{shlex.join(argv)} failed ({done.returncode}): "
                          f"{done.stderr.strip()}" + (f"\ninput:\n{stdin}" if stdin else ""))
    return done.stdout


def run_parallel(jobs: Sequence[tuple[list[str], str]], timeout: float = 30) -> None:
    """Run independent commands at once: bring-up is mostly fork/exec latency."""
    ParallelJobs(jobs).wait(timeout)


class ParallelJobs:
    """``run_parallel``, split into start and wait so other work happens meanwhile.

    Each job is (argv, stdin text); a job that exits non-zero makes ``wait`` raise
    NetsimError with every failure.
    """

    def __init__(self, jobs: Sequence[tuple[list[str], str]]) -> None:
        self.started: list[tuple[list[str], str, subprocess.Popen]] = []
        for argv, stdin in jobs:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            assert proc.stdin is not None
            proc.stdin.write(stdin)  # small: fits in the pipe buffer, never blocks
            proc.stdin.close()
            self.started.append((argv, stdin, proc))

    def wait(self, timeout: float = 30) -> None:
        errors = []
        for argv, stdin, proc in self.started:
            assert proc.stderr is not None
            err = proc.stderr.read()  # small; reading first cannot deadlock
            proc.stderr.close()
            if proc.wait(timeout) != 0:
                errors.append(f"{shlex.join(argv)} failed: {err.strip()}\ninput:\n{stdin}")
        if errors:
            raise NetsimError("\n".join(errors))


def terminate(victims: dict[int, str]) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after TERM_GRACE seconds.

    victims: {pid: what it is, for the log}. Only pass PIDs known to be ours
    (``matches``, or found in our namespaces).
    """
    for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, KILL_GRACE)):
        pending = [pid for pid in victims if alive(pid)]
        if not pending:
            return
        if sig == signal.SIGKILL:
            log.warning("killing %s: still alive %.0f s after SIGTERM",
                        ", ".join(f"{pid} ({victims[pid]})" for pid in pending), TERM_GRACE)
        for pid in pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(alive(pid) for pid in pending) and time.monotonic() < deadline:
            time.sleep(0.01)
