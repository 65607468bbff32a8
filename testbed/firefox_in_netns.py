"""Firefox inside a network namespace, driven by Playwright from outside it.

Playwright drives Firefox over WebDriver BiDi: a WebSocket that Firefox opens on a loopback
port (``--remote-debugging-port=0``) and names on stderr ("WebDriver BiDi listening on
ws://127.0.0.1:PORT"). Inside a test's network namespace that port is on the namespace's own
loopback, out of reach of the Playwright driver in the host's, and Playwright offers no pipe
for Firefox (it does for Chromium, which ``testbed.chromium`` uses). So Playwright starts this
script as the browser's executable; it

1. binds a port on the host's loopback,
2. enters the namespace (``ip netns exec``, which keeps that socket: a socket stays in the
   namespace it was made in),
3. starts Firefox there with the same port number on the namespace's loopback (Firefox
   refuses a handshake whose ``Host`` names another port), passing on its stderr,
4. once Firefox says it listens, relays each connection on the host's port to Firefox's.

Every packet Firefox sends stays in the namespace; only the driver's connection crosses
over, and only to it. Playwright ends the browser by closing it over that connection (Firefox
exits, then this script with its exit status) or by killing the process group it started,
which Firefox shares with this script.

Standard library only, run by path (not imported): it runs in the interpreter Playwright's
executable wrapper names.

Usage: firefox_in_netns.py NAMESPACE FIREFOX [FIREFOX ARGUMENTS...]
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

LISTENING = re.compile(rb"WebDriver BiDi listening on ws://(\[[^\]]+\]|[^:/\s]+):(\d+)")
INSIDE = "--inside-namespace"


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction of a relayed connection until it ends, then end the other side's
    sending half so the peer sees the close."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay(listener: socket.socket, host: str, port: int) -> None:
    """Accept connections on the host-side ``listener`` and join each to Firefox's port."""
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection((host, port))
        except OSError:
            client.close()
            continue
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()


def inside(listener_fd: int, firefox: list[str]) -> int:
    """Steps 3 and 4, in the namespace: Firefox, with its stderr passed on."""
    listener = socket.socket(fileno=listener_fd)
    port = listener.getsockname()[1]
    firefox = [f"--remote-debugging-port={port}" if arg.startswith("--remote-debugging-port")
               else arg for arg in firefox]
    browser = subprocess.Popen(firefox, stderr=subprocess.PIPE)  # stdout: Playwright's
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: browser.send_signal(signum))
    assert browser.stderr is not None
    relaying = False
    for line in browser.stderr:
        match = LISTENING.search(line)
        if match is not None and not relaying:
            host = match.group(1).decode().strip("[]")
            threading.Thread(target=relay, args=(listener, host, int(match.group(2))),
                             daemon=True).start()
            relaying = True
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
    return browser.wait()


def main(argv: list[str]) -> int:
    if argv and argv[0] == INSIDE:
        return inside(int(argv[1]), argv[2:])
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    namespace, *firefox = argv
    listener = socket.create_server(("127.0.0.1", 0))  # steps 1 and 2
    listener.set_inheritable(True)
    os.execvp("ip", ["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__),
                     INSIDE, str(listener.fileno()), *firefox])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
