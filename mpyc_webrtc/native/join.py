"""``mpyc-webrtc-peer join``: join a session and run its program as MPyC would."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import wire
from ..ice import parse_ice_server
from ..launch import (
    CONTEXT,
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
from ..sealing import JoinSecret, TamperError
from ..sentences import say
from .console import StatusDisplay
from .create import session_info
from .errors import Failure

log = logging.getLogger("mpyc_webrtc.peer")


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
        raise Failure(say("tamper.server_program", ours=fingerprint(ours),
                          link=fingerprint(secret.program_hash)))
    return ours


def join(args: argparse.Namespace) -> int:
    from ..mesh import MeshError, install_mesh
    from .errors import PeerError
    from .ice import allow_loopback_candidates
    from .links import AiortcFactory
    from .signaling import Signaling

    server, session_id, secret = parse_join_url(args.url)
    CONTEXT.session = session_id
    try:
        extra_ice = [parse_ice_server(u) for u in args.ice_server]
    except ValueError as exc:
        raise Failure(str(exc), 2) from None
    # Check the input against the session's program before taking a place in it.
    info = session_info(server, session_id)
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
