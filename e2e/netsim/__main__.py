"""``python -m e2e.netsim up|down|status|cut|restore|bench``: the simulated internet by hand.

``up`` leaves the simulation running after it exits (coturn, the wire and the
server are daemons recorded in the state file); ``down`` ends it from any shell.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .internet import NAT_TYPES, Internet, NetsimError
from .wire import DEFAULT_REORDER_MS


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated party numbers: {text!r}") from None


def _nats(text: str) -> list[str]:
    nats = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in nats if x not in NAT_TYPES]
    if bad or not nats:
        raise argparse.ArgumentTypeError(
            f"want a comma-separated list of {', '.join(NAT_TYPES)}: {text!r}")
    return nats


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m e2e.netsim", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = p.add_subparsers(dest="command", required=True)

    def named(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.add_argument("--name", default="msim", help="namespace prefix")
        return sp

    up = named("up", "build the simulation (removing an earlier one of the same name)")
    up.add_argument("--nat", type=_nats, default=["cone", "symmetric", "public"],
                    help="one NAT type per party: " + ", ".join(NAT_TYPES))
    up.add_argument("--block-udp", type=_ints, action="extend", default=[], metavar="I[,J]",
                    help="parties whose router drops all UDP (only TURN over TCP works)")
    up.add_argument("--delay-ms", type=float, default=0.0,
                    help="one-way delay on every access link, each direction")
    up.add_argument("--loss", type=float, default=0.0,
                    help="packet loss on every access link, each direction (0..1)")
    up.add_argument("--reorder", type=float, default=0.0,
                    help="fraction of packets held back --reorder-ms longer on every access "
                    "link, so that later ones overtake them (0..1)")
    up.add_argument("--reorder-ms", type=float, default=DEFAULT_REORDER_MS,
                    help="how much longer a reordered packet is held back")
    up.add_argument("--duplicate", type=float, default=0.0,
                    help="fraction of packets delivered twice on every access link (0..1)")
    up.add_argument("--wire", action="store_true",
                    help="use the userspace wire even without delay or loss")
    up.add_argument("--seed", type=int, default=None,
                    help="seed for the wire's losses, reordering and duplicates")
    up.add_argument("--turn-secret", default="s3cret", help="coturn's REST auth secret")
    up.add_argument("--coturn", action=argparse.BooleanOptionalAction, default=True,
                    help="start coturn (TURN and STUN); without it there is no relay and "
                    "the STUN server is the signaling server's own")
    up.add_argument("--server", action=argparse.BooleanOptionalAction, default=False,
                    help="start the signaling server on the public side")
    up.add_argument("--wireguard", action="store_true",
                    help="also a WireGuard full mesh between the parties (wireguard-go; "
                    "tunnel addresses 10.77.0.I+1), a VPN-mesh baseline")
    named("down", "end every process and delete the namespaces")
    named("status", "show what exists and which processes are alive")
    for verb, what in (("cut", "take party I off the network"),
                       ("restore", "bring party I back")):
        sp = named(verb, what)
        sp.add_argument("party", type=int, metavar="I")
    bench = named("bench", "measure the wire's overhead (builds its own simulation)")
    bench.add_argument("--delay-ms", type=float, default=0.0)
    bench.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("netsim needs root (network namespaces, iptables)", file=sys.stderr)
        return 2
    try:
        return _command(args)
    except (NetsimError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> int:
    if args.command == "up":
        net = Internet(args.nat, args.block_udp, args.delay_ms, args.loss, args.turn_secret,
                       args.name, args.server, wire=args.wire or None, seed=args.seed,
                       reorder=args.reorder, reorder_ms=args.reorder_ms,
                       duplicate=args.duplicate, coturn=args.coturn)
        if args.wireguard:
            from .wireguard import check_supported

            check_supported(net.parties)  # before building anything
        net.up()
        print(net.describe())
        print(f"\nup in {net.up_seconds:.3f} s")
        if args.wireguard:
            try:
                mesh = net.wireguard_mesh()
            except BaseException:
                net.down()  # half a simulation is no use to anyone
                raise
            print()
            print(mesh.describe())
        return 0
    if args.command == "down":
        net = Internet(name=args.name)
        existed = net.existing_namespaces()
        net.down()
        print(f"{args.name}: removed {len(existed)} namespaces in {net.down_seconds:.3f} s")
        return 0
    if args.command == "status":
        return _status(args.name)
    if args.command in ("cut", "restore"):
        net = Internet.load(args.name)
        getattr(net, args.command)(args.party)
        print(f"party {args.party}: {'offline' if args.command == 'cut' else 'online'}")
        return 0
    if args.command == "bench":
        from .bench import run_bench

        run_bench(args.name, args.delay_ms, args.seconds)
        return 0
    raise AssertionError(args.command)


def _status(name: str) -> int:
    try:
        net = Internet.load(name)
    except (OSError, ValueError, KeyError):
        net = Internet(name=name)
    st = net.status()
    if not st["namespaces"] and not st["state_file"]:
        print(f"{name}: not running")
        return 1
    print(f"{name}: {len(st['namespaces'])} namespaces: {' '.join(st['namespaces'])}")
    print(f"state file: {st['state_file'] or '(none)'}")
    for p in st["processes"]:
        print(f"  {p['pid']:>7} {'alive' if p['alive'] else 'gone ':5} {p['role']:<9} "
              f"{p['ns']:<12} {p['cmd'][:90]}")
    if st["state_file"]:
        print()
        print(net.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
