"""A throw-away ``redis-server`` (Debian's) for tests and benchmarks of shared sessions.

It listens only on a Unix socket in its own temporary directory (``--port 0``): nothing
on the network, no port to collide with another run. It saves nothing to disk. Ended by
its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

#: Why a real Redis cannot run here, or None.
MISSING = None if shutil.which("redis-server") else (
    "redis-server is not installed (Debian package redis-server; ./run.sh test installs it)")


class RedisServer:
    """``redis-server`` on a Unix socket; ``url`` is what ``--redis`` takes."""

    def __init__(self) -> None:
        if MISSING:
            raise RuntimeError(MISSING)
        self.dir = Path(tempfile.mkdtemp(prefix="mpyc-redis-"))
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start: {out}")
            time.sleep(0.02)

    def cli(self, *args: str) -> str:
        """``redis-cli`` against this server (for a look inside, e.g. ``INFO memory``)."""
        return subprocess.run(["redis-cli", "-s", str(self.socket), *args], check=True,
                              capture_output=True, text=True).stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
