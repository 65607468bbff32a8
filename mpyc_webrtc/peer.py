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
import asyncio
import inspect
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import programs, wire
from .console import StatusDisplay, clean
from .ice import parse_ice_server
from .launch import (
    CONTEXT,
    LOG_FORMAT,
    LaunchError,
    check_input,
    compile_program,
    error_message,
    exit_message,
    fingerprint,
    main_module,
    program_argv,
    program_file,
    program_hash,
)
from .sealing import JoinSecret, TamperError, tamper_server_program

log = logging.getLogger("mpyc_webrtc.peer")


class Failure(Exception):
    """Ends the command with a one-line message for the person who ran it."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


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


# -- create ---------------------------------------------------------------------------------

def create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"parties": args.parties, "args": args.args or []}
    if args.program_file:
        path = Path(args.program_file)
        try:
            body["source"] = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(f"Cannot read the program file {path}: {exc}.") from None
        body["program"] = path.name
    else:
        body["program"] = args.program
    if args.labels:
        body["labels"] = args.labels
    if args.relay_only:
        body["relay_only"] = True
    # The hash is computed here from what is sent, as every party computes it from what it
    # runs; it goes into the link, with the secret, never to the server.
    try:
        secret = JoinSecret.create({"name": body["program"], "args": body["args"],
                                    "builtin": "source" not in body,
                                    "source": body.get("source")})
    except LaunchError as exc:
        raise Failure(str(exc)) from None
    body["token_hash"] = secret.token_hash
    url = args.server.rstrip("/") + "/api/sessions"
    reply = _post_json(url, body)
    program = reply["program"]
    ours = secret.fingerprint
    if program.get("hash", secret.program_hash) != secret.program_hash:
        log.warning("the server shows the fingerprint %s for this program, this computer "
                    "%s: the server may run a different version, and parties given another "
                    "program will refuse to run it", fingerprint(program["hash"]), ours)
    link = secret.link(reply["join_url"])
    title = program.get("title") or program["name"]
    shown = f"{title!r}" if title == program["name"] else f"{title!r} ({program['name']})"
    print(f"Session {reply['session']} for {reply['parties']} parties running {shown}, "
          f"fingerprint {ours}.")
    for pid, label in enumerate(reply.get("labels") or []):
        if label:
            print(f"    party {pid}: {clean(label)}")
    if reply.get("relay_only"):
        print("Relay only: all traffic goes through the server's TURN relay, so the "
              "parties never learn each other's addresses.")
    print("Each party joins with (the whole link, with its secret part after the # sign; "
          "share it only with the parties):")
    # Quoted: '#' and '&' mean something to a shell.
    print(f"    mpyc-webrtc-peer join {shlex.quote(link)}{input_hint(program)}")
    if not args.no_qr:
        _print_qr(link)
    print(link, flush=True)  # the last line: scripts read the link from it
    return 0


def input_hint(program: dict[str, Any]) -> str:
    """`` --input ...`` as a built-in program wants it, for the join command line."""
    spec = programs.CATALOG.get(program["name"]) if program.get("builtin") else None
    if spec is None or spec.input.kind == "none":
        return ""
    if spec.input.kind == "choice":
        return " --input " + "|".join(value for value, _ in spec.input.choices)
    if spec.input.kind == "integers":
        return " --input N,N,..."
    return " --input YOUR_NUMBER"


def _print_qr(url: str) -> None:
    """The join link as a QR code on stderr, for a phone's camera; stdout stays parseable."""
    import segno

    try:
        sys.stdout.flush()
        print("Or scan the link:", file=sys.stderr)
        segno.make(url, error="m").terminal(out=sys.stderr, compact=True)
        sys.stderr.flush()
    except (OSError, UnicodeEncodeError, ValueError) as exc:
        log.warning("could not print the QR code: %s", exc)


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            error = json.load(exc)
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            message = f"The server answered {exc.code} {exc.reason}."
        raise Failure(message) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            reason = "nothing is listening there: connection refused"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        raise Failure(f"Could not reach the signaling server at {url} ({reason}).") from None


def _session_info(server: str, session_id: str) -> dict[str, Any] | None:
    """``GET /api/sessions/ID``; None if the server cannot be asked (joining will say why)."""
    url = f"{server}/api/sessions/{session_id}"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            info = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["message"]
        except (ValueError, KeyError, TypeError):
            return None
        raise Failure(message) from None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("program"), dict) else None


# -- join -----------------------------------------------------------------------------------

def parse_join_url(url: str) -> tuple[str, str, JoinSecret]:
    """``http://host:port/join/ID#k=...&p=...`` -> (``http://host:port``, ``ID``, secret).

    A link without its fragment, or with a damaged one, is refused (exit status 2) before
    anything is sent to the server.
    """
    parts = urlsplit(url)
    match = re.fullmatch(r"(.*)/join/([A-Za-z0-9_-]+)/?", parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or not match:
        raise Failure(f"{url!r} is not a join link; it should look like "
                      "http://HOST:PORT/join/SESSION_ID#k=...&p=....", 2)
    try:
        secret = JoinSecret.from_fragment(parts.fragment)
    except ValueError as exc:
        raise Failure(str(exc), 2) from None
    return f"{parts.scheme}://{parts.netloc}{match.group(1)}", match.group(2), secret


def check_program(program: Any, secret: JoinSecret) -> str:
    """The hash of ``program`` (from the server) if it is the link's; else ``Failure``."""
    try:
        ours = program_hash(program)
    except LaunchError as exc:
        raise Failure(str(exc)) from None
    except (KeyError, TypeError, AttributeError):
        ours = "0" * 64  # no usable program at all: certainly not the link's
    if ours != secret.program_hash:
        raise Failure(tamper_server_program(ours, secret.program_hash))
    return ours


def join(args: argparse.Namespace) -> int:
    from .mesh import MeshError, install_mesh
    from .native import AiortcFactory, PeerError, Signaling, allow_loopback_candidates

    server, session_id, secret = parse_join_url(args.url)
    CONTEXT.session = session_id
    try:
        extra_ice = [parse_ice_server(u) for u in args.ice_server]
    except ValueError as exc:
        raise Failure(str(exc), 2) from None
    # Check the input against the session's program before taking a place in it.
    info = _session_info(server, session_id)
    if info is not None:
        check_program(info["program"], secret)
        try:
            problem = check_input(info["program"], args.input)
        except (KeyError, TypeError, AttributeError):
            problem = None  # the welcome's program is checked again below
        if problem is not None:
            raise Failure(_input_problem(problem, args.input), 2)
    if args.allow_loopback:
        allow_loopback_candidates()

    display = StatusDisplay(enabled=not args.quiet)
    handler = getattr(args, "log_handler", None)
    if handler is not None and display.terminal:
        handler.setStream(display.guard(handler.stream))
    loop = new_event_loop()
    asyncio.set_event_loop(loop)  # MPyC's runtime caches this loop when it is imported
    signaling = Signaling(server, session_id, args.name or "", secret=secret.secret,
                          token=secret.token)
    mesh = None

    def stop_at_once(error: TamperError) -> None:
        # Whoever waits for signaling (joining, waiting for the start, connecting) gets
        # the TamperError from it; once the program computes nobody does, so it is ended
        # as a broken link ends it. The tampering is reported below either way.
        if mesh is not None and mesh.transports and loop.is_running():
            loop.stop()

    def tampered() -> Failure | None:
        """The failure to report if signaling was tampered with: it outranks all else."""
        if signaling.tampered is None:
            return None
        return Failure(str(signaling.tampered))

    signaling.on_tamper = stop_at_once
    try:
        welcome = loop.run_until_complete(signaling.join())
    except PeerError as exc:
        raise Failure(str(exc)) from None
    pid, parties, program = welcome["pid"], welcome["parties"], welcome["program"]
    CONTEXT.party = str(pid)
    log.info("joined as party %d of %d; program %s", pid, parties, program["name"])
    try:
        # Before connecting to anyone: the program must be the one the link names.
        own_hash = check_program(program, secret)
    except Failure:
        loop.run_until_complete(signaling.close())
        raise
    display.joined(welcome, secret.fingerprint)

    def on_roster(roster: dict[str, Any]) -> None:
        display.roster(roster)
        if mesh is not None:
            mesh.set_names(roster["members"])
            for member in roster["members"]:
                if member["state"] == "left":
                    mesh.peer_left(member["pid"])

    signaling.on_roster = on_roster
    if signaling.roster is not None:  # it came with the welcome
        display.roster(signaling.roster)

    factory = AiortcFactory(signaling, list(welcome["ice_servers"]) + extra_ice,
                            program_hash=own_hash, join_timeout=args.join_timeout,
                            relay_only=bool(welcome.get("relay_only")))
    real_stdout = sys.stdout
    if real_stdout is not None and real_stdout.isatty():
        sys.stdout = display.guard(real_stdout)  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="mpyc-webrtc-") as workdir:
            problem = check_input(program, args.input)
            if problem is not None:
                raise Failure(_input_problem(problem, args.input), 2)
            try:
                path = program_file(program, Path(workdir))
                code = compile_program(path)
            except (LaunchError, SyntaxError) as exc:
                raise Failure(str(exc)) from None
            sys.argv = program_argv(path, parties, pid, program["args"], args.input)
            import mpyc  # reads MPyC's options from sys.argv, may install uvloop's policy

            asyncio.set_event_loop(loop)  # a new policy forgets it; the runtime must get it
            import mpyc.runtime

            mpc = mpyc.runtime.mpc
            if mpc.pid != pid or len(mpc.parties) != parties or mpc._loop is not loop:
                raise Failure("mpyc.runtime was imported before the session was joined; "
                              "it must be set up by mpyc-webrtc-peer.")
            if (failure := tampered()) is not None:
                raise failure
            running = True

            def stop_program(error: Exception) -> None:
                # Ends the mpc.run(...) the program is blocked in; see the except below.
                if running:
                    loop.stop()

            mesh = install_mesh(mpc, factory, connect_timeout=args.connect_timeout,
                                on_failure=stop_program)
            if signaling.roster is not None:
                mesh.set_names(signaling.roster["members"])
            sys.path.insert(0, str(path.parent))
            module = main_module(path)
            sys.modules["__main__"] = module
            try:
                result = eval(code, module.__dict__)
                if inspect.iscoroutine(result):  # top-level await: run it on the loop
                    loop.run_until_complete(result)
            except SystemExit as exc:
                if (failure := tampered()) is not None:
                    raise failure from None
                message = exit_message(program["name"], exc.code)
                if message is not None:
                    code = exc.code if isinstance(exc.code, int) else 1
                    raise Failure(message, code) from None
            except (MeshError, PeerError) as exc:
                raise tampered() or Failure(str(mesh.failure or exc)) from None
            except Exception as exc:
                if (failure := tampered()) is not None:
                    raise failure from None
                if mesh.failure is not None:
                    raise Failure(str(mesh.failure)) from None
                log.error("the program raised:\n%s", traceback.format_exc().rstrip())
                raise Failure(error_message(program["name"], exc)) from None
            finally:
                running = False
            if (failure := tampered()) is not None:
                raise failure
            if mesh.failure is not None:
                raise Failure(str(mesh.failure))
            display.finished()
            return 0
    except BaseException:
        display.failed()
        raise
    finally:
        sys.stdout.flush()
        # Linger for the channels' closing handshakes only after an MPyC shutdown; a
        # program that never called mpc.shutdown() has nobody closing them.
        graceful = (mesh is not None and mesh.failure is None and mesh.closing
                    and signaling.tampered is None)
        loop.run_until_complete(_close(factory, signaling, graceful))
        display.close()
        sys.stdout = real_stdout


def _input_problem(problem: str, text: str | None) -> str:
    """What is wrong with the ``--input``, and how to give it."""
    return f"{problem} Give it with --input." if text is None else problem


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed, as MPyC itself chooses (and ``MPYC_NOUVLOOP=1`` declines)."""
    if os.environ.get("MPYC_NOUVLOOP", "0") == "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def _close(factory: Any, signaling: Any, graceful: bool) -> None:
    try:
        await factory.close(graceful=graceful, linger=10.0 if graceful else 0.0)
    except Exception:
        log.debug("closing peer connections failed", exc_info=True)
    if signaling.tampered is not None:  # let the others see why this party stopped
        try:
            await signaling.send(wire.message("status", state="failed",
                                              detail="Tampering detected; this party stopped."))
        except Exception:
            log.debug("could not report the failure")
    await signaling.close()


# -- command line ---------------------------------------------------------------------------

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
    c.add_argument("--relay-only", action="store_true",
                   help="send all traffic through the server's TURN relay, so that the "
                        "parties never learn each other's network addresses")
    c.add_argument("--no-qr", action="store_true",
                   help="do not print the join link as a QR code (on stderr)")
    c.set_defaults(run=create)

    j = sub.add_parser("join", help="join a session and run its program")
    j.add_argument("url", metavar="JOIN_URL")
    j.add_argument("--input", metavar="VALUE",
                   help="your private input, as the session's program asks for it: a number, "
                        "a comma-separated list, or a choice such as yes or no")
    j.add_argument("--name", help="how other parties see you in the roster")
    j.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="extra STUN/TURN server (stun:HOST:PORT or "
                        "turn:USER:PASSWORD@HOST:PORT); repeatable")
    j.add_argument("--connect-timeout", type=float, default=20.0, metavar="SECONDS",
                   help="give up if the peers are not connected this long after all joined")
    j.add_argument("--join-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="give up if not all parties joined within this time")
    j.add_argument("--allow-loopback", action="store_true",
                   help="for tests only: offer 127.0.0.1 as an ICE candidate")
    j.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what happens (-vv: in detail)")
    j.add_argument("-q", "--quiet", action="store_true",
                   help="show no session status on stderr, only warnings and errors")
    j.set_defaults(run=join)
    return top


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
