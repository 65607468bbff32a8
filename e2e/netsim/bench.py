"""What the userspace wire costs: RTT and TCP throughput, veth against wire.

``python -m e2e.netsim bench`` builds two throw-away one-party simulations (one with
veth access links, one with the wire at the requested delay) and measures, from the
LAN host to a sink on the public side: UDP ping-pong RTT and bulk TCP throughput.
The numbers in docs/netsim.md come from here.
"""

from __future__ import annotations

import subprocess
import sys

from .internet import Internet

_SINK = r"""
import socket, sys, threading
host = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((host, 5000))
def echo():
    while True:
        data, addr = u.recvfrom(2048)
        u.sendto(data, addr)
threading.Thread(target=echo, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((host, 5001))
t.listen()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    n = 0
    while data := c.recv(1 << 20):
        n += len(data)
    c.sendall(str(n).encode())
    c.close()
"""

_CLIENT = r"""
import socket, statistics, sys, time
host, seconds = sys.argv[1], float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1)
rtts = []
for i in range(200):
    t0 = time.perf_counter()
    u.sendto(b"%d" % i, (host, 5000))
    try:
        while u.recv(64) != b"%d" % i:
            pass
    except socket.timeout:
        continue
    rtts.append((time.perf_counter() - t0) * 1e3)
c = socket.create_connection((host, 5001))
chunk = bytes(1 << 16)
t0 = time.perf_counter()
while time.perf_counter() - t0 < seconds:
    c.sendall(chunk)
c.shutdown(socket.SHUT_WR)
n = int(c.recv(64))
elapsed = time.perf_counter() - t0
print(f"{statistics.median(rtts):.3f} {min(rtts):.3f} {n / elapsed / 1e6:.1f} {len(rtts)}")
"""


def measure(net: Internet, seconds: float) -> tuple[float, float, float]:
    """(median RTT ms, min RTT ms, TCP MB/s) from party 0's LAN host to the public side."""
    sink = net.popen(net.public, [sys.executable, "-c", _SINK, net.server_ip],
                     stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    if sink.stdout.readline().strip() != "ready":
        raise RuntimeError("sink did not start")
    done = net.run(net.parties[0].ns, [sys.executable, "-c", _CLIENT, net.server_ip,
                                        str(seconds)], timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    median, low, mbps, _ = done.stdout.split()
    return float(median), float(low), float(mbps)


def run_bench(name: str, delay_ms: float, seconds: float) -> None:
    rows = []
    for label, kwargs in (("veth", {}),
                          (f"wire {delay_ms:g} ms", {"wire": True, "delay_ms": delay_ms})):
        with Internet(nats=["cone"], name=name, **kwargs) as net:
            up = net.up_seconds
            median, low, mbps = measure(net, seconds)
        rows.append((label, up, median, low, mbps))
    print(f"{'access link':<16} {'up s':>6} {'RTT median ms':>14} {'RTT min ms':>11} "
          f"{'TCP MB/s':>9}")
    for label, up, median, low, mbps in rows:
        print(f"{label:<16} {up:>6.3f} {median:>14.3f} {low:>11.3f} {mbps:>9.1f}")
