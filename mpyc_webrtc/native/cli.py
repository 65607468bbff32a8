"""``mpyc-webrtc-peer``: create a session, or join one and run its MPyC program.

A joined party runs the session's program in this process exactly as MPyC would
run it from a shell: ``sys.argv`` is ``[program, -M m, -I pid, *args]`` when
``mpyc.runtime`` is first imported, and ``mpc.start()``/``mpc.shutdown()`` are
replaced by the channel mesh. The program's stdout is this command's stdout;
the session's status (``console.StatusDisplay``: who is here, each link, the program's
fingerprint) and logs go to stderr. ``create`` prints the join link as its last stdout
line, and as a QR code on stderr.

The join link's fragment (``#k=...&p=...``, see ``sealing.JoinSecret``) carries the
session's secret and its program's hash: ``create`` draws them and sends the server only
the join token's hash; ``join`` shows the token, refuses a program whose hash is not the
link's, and seals everything it tells the other parties. Any sign of tampering
(``sealing.TamperError``) stops the party at once.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from .. import programs
from ..launch import CONTEXT, LOG_FORMAT
from .create import create
from .errors import Failure
from .join import join

log = logging.getLogger("mpyc_webrtc.peer")


#: Where the key file is by default (``identity.default_path``), in words.
IDENTITY_DEFAULT = ("identity.pem in your config directory, $XDG_CONFIG_HOME/mpyc-webrtc or "
                    "~/.config/mpyc-webrtc")


def setup_logging(verbosity: int) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CONTEXT)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]  # also keeps MPyC's logging.basicConfig off stdout
    root.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1
                  else logging.INFO)
    if verbosity < 2:
        for noisy in ("aioice", "aiortc", "aiohttp"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mpyc-webrtc-peer",
        description="Take part in an MPyC computation over WebRTC, or create a session.")
    sub = top.add_subparsers(dest="command", required=True)

    c = sub.add_parser("create", help="create a session and print its join link")
    c.add_argument("server", metavar="SERVER_URL", help="e.g. http://127.0.0.1:8080")
    c.add_argument("--parties", "-m", type=int, required=True, metavar="M",
                   help="number of parties, 2 to 32")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--program", choices=list(programs.CATALOG), metavar="NAME",
                      help="a built-in program: " + ", ".join(programs.CATALOG))
    what.add_argument("--program-file", metavar="FILE.py",
                      help="an MPyC script to upload and run at every party")
    c.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                   help="arguments for the program (everything after --args)")
    c.add_argument("--labels", nargs="+", metavar="LABEL",
                   help='what each place stands for, in party order: --labels "hospital A" '
                        '"hospital B" ...')
    c.add_argument("--pin", action="append", default=[], metavar="PLACE=DID",
                   help='keep a place for one person\'s key: --pin "hospital A=did:key:z6Mk..." '
                        "(PLACE: a label of --labels, or party N; DID: what mpyc-webrtc-peer "
                        "identity prints on that person's computer, or 'me' for yours); "
                        "repeatable. Only that key can take the place, and every party checks "
                        "it")
    c.add_argument("--identity", metavar="FILE", type=Path,
                   help="your key file, for --pin PLACE=me (default: " + IDENTITY_DEFAULT + ")")
    c.add_argument("--relay-only", action="store_true",
                   help="send all traffic through the server's TURN relay, so that the "
                        "parties never learn each other's network addresses")
    c.add_argument("--no-privacy", action="store_true",
                   help="create the session even though its inputs are not (fully) private: "
                        "2 parties, or -T below MPyC's default; everyone who joins is told")
    c.add_argument("--no-qr", action="store_true",
                   help="do not print the join link as a QR code (on stderr)")
    c.set_defaults(run=create)

    i = sub.add_parser("identity", help="show your identity (made the first time): the "
                                        "did:key and fingerprint others see you as")
    i.add_argument("--identity", metavar="FILE", type=Path,
                   help="the key file to use (default: " + IDENTITY_DEFAULT + ")")
    i.set_defaults(run=show_identity)

    j = sub.add_parser("join", help="join a session and run its program")
    j.add_argument("url", metavar="JOIN_URL")
    j.add_argument("--input", metavar="VALUE",
                   help="your private input, as the session's program asks for it: a number, "
                        "a comma-separated list, or a choice such as yes or no")
    j.add_argument("--name", help="how other parties see you in the roster")
    j.add_argument("--place", metavar="PLACE",
                   help='take this place: its label ("hospital A") or party N; by default '
                        "the place kept for your key, or the first free one")
    j.add_argument("--identity", metavar="FILE", type=Path,
                   help="your key file, made the first time (default: " + IDENTITY_DEFAULT
                        + "): the other parties see and check its did:key")
    j.add_argument("--known", metavar="FILE", type=Path,
                   help="where to remember whom you computed with (default: known.json next "
                        "to the key file)")
    j.add_argument("--say", action="append", default=[], metavar="TEXT",
                   help="a chat message for the other parties, sent once everyone is here; "
                        "repeatable. In a terminal, each line you type is sent too")
    j.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="extra STUN/TURN server (stun:HOST:PORT or "
                        "turn:USER:PASSWORD@HOST:PORT); repeatable")
    j.add_argument("--connect-timeout", type=float, default=20.0, metavar="SECONDS",
                   help="give up if the peers are not connected this long after all joined")
    j.add_argument("--join-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="give up if not all parties joined within this time")
    j.add_argument("--trust-program", action="store_true",
                   help="run the session's program even if its creator uploaded it, without "
                        "asking (it runs with your rights: read it first)")
    j.add_argument("--accept-no-privacy", action="store_true",
                   help="take part even if the session keeps inputs less than fully private "
                        "(2 parties, or -T below MPyC's default)")
    j.add_argument("--allow-loopback", action="store_true",
                   help="for tests only: offer 127.0.0.1 as an ICE candidate")
    j.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what happens (-vv: in detail)")
    j.add_argument("-q", "--quiet", action="store_true",
                   help="show no session status on stderr, only warnings and errors")
    j.set_defaults(run=join)
    return top


def show_identity(args: argparse.Namespace) -> int:
    """Print this peer's did:key and fingerprint (stdout), making the key the first time."""
    from ..identity import IdentityError, default_path, load_or_create

    path = args.identity or default_path()
    try:
        me, created = load_or_create(path)
    except IdentityError as exc:
        raise Failure(str(exc)) from None
    print(me.did)
    print(f"fingerprint {me.fingerprint}", flush=True)
    if created:
        print(f"Made a new identity in {path}. Keep that file: it is how the other parties "
              "recognise you from one session to the next.", file=sys.stderr)
    return 0


def _glue_negative_inputs(argv: list[str]) -> list[str]:
    """Let ``--input -2,-9`` mean ``--input=-2,-9``; argparse would take it for an option."""
    glued: list[str] = []
    for arg in argv:
        if glued and glued[-1] == "--input" and re.fullmatch(r"-\d[\d,\s-]*", arg):
            glued[-1] = f"--input={arg}"
        else:
            glued.append(arg)
    return glued


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(_glue_negative_inputs(sys.argv[1:] if argv is None else argv))
    verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    if args.command == "join" and verbosity == 0 and sys.stderr.isatty():
        verbosity = -1  # in a terminal the status display tells the story; -v adds the log
    args.log_handler = setup_logging(verbosity)
    if args.command == "join":
        from .patches import install as install_patches

        install_patches()  # aiortc as the peer runs it (see the patches' docstring)
    try:
        code = args.run(args)
    except Failure as exc:
        print(f"mpyc-webrtc-peer: error: {exc}", file=sys.stderr, flush=True)
        code = exc.code
    except KeyboardInterrupt:
        print("mpyc-webrtc-peer: interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
