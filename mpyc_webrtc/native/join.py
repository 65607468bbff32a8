"""``mpyc-webrtc-peer join``: join a session and run its program as MPyC would."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import known, programs
from ..client import new_resume
from ..ice import parse_ice_server
from ..identity import Identity, IdentityError, default_path, load_or_create
from ..launch import (
    CONTEXT,
    ProgramFailed,
    check_input,
    import_runtime,
    input_reading,
    prepare,
    run_as_main,
    run_to_the_end,
)
from ..recovery import setting
from ..sealing import JoinSecret, TamperError, open_descriptor
from ..sentences import say
from . import places
from .consent import check_privacy, consent_to_program
from .console import StatusDisplay, chat_line, clean, identity_lines
from .create import session_info
from .errors import Failure, PeerError

log = logging.getLogger("mpyc_webrtc.peer")

#: When MPyC was set up before this command could give it the session's parties and loop.
TOO_LATE = ("mpyc.runtime was imported before the session was joined; it must be set up by "
            "mpyc-webrtc-peer.")


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


def join(args: argparse.Namespace) -> int:
    from ..mesh import Mesh, MeshError, install_mesh
    from .ice import allow_loopback_candidates
    from .links import AiortcFactory
    from .network import CrossingFactory, NetworkThread
    from .signaling import Signaling

    server, session_id, secret = parse_join_url(args.url)
    CONTEXT.session = session_id
    try:
        # A switch for comparing (bench/): every party of a session must set it alike.
        recovery = setting(os.environ.get("MPYC_WEBRTC_RECOVERY"))
    except ValueError as exc:
        raise Failure(f"MPYC_WEBRTC_RECOVERY: {exc}.", 2) from None
    try:
        extra_ice = [parse_ice_server(u) for u in args.ice_server]
    except ValueError as exc:
        raise Failure(str(exc), 2) from None
    identity_path = args.identity or default_path()
    me, made = own_identity(identity_path)
    memory = KnownIdentities(args.known or known.path_for(identity_path))
    loop = new_event_loop()
    asyncio.set_event_loop(loop)  # MPyC's runtime caches this loop when it is imported
    # Read before the session's members are: a place another peer of this user took after
    # that (sharing this directory) is then among the members, not taken over (``kept_place``).
    places_file = kept_places_path(identity_path)
    kept_places = load_kept_places(places_file, session_id)
    info = session_info(server, session_id)
    # The creator's own word (sealed) on the session, if the server passes it on; the
    # welcome's is checked against it in any case.
    chosen = None if info is None else open_descriptor(secret.secret, info.get("descriptor"))
    role = None if args.place is None else choose_place(args.place, info, chosen)
    # A place this key held in this session before (the same link run again): its resume
    # secret gets it back while the session waits. After the start there is nothing to come
    # back to for a native peer (its program ran, or broke, with the process that ran it),
    # and the places of the user's other peers are kept here too: it joins as any newcomer.
    kept = None if info is None or info.get("started") else kept_place(
        kept_places, {m.get("pid") for m in info.get("members", [])})
    resume = kept[0] if kept is not None else new_resume()
    if kept is not None and role is None:
        role = kept[1]
    signaling = Signaling(server, session_id, args.name or "", secret=secret.secret,
                          token=secret.token, link_hash=secret.program_hash,
                          identity=me, role=role, resume=resume)

    def tampered() -> Failure | None:
        """The failure to report if signaling was tampered with: it outranks all else."""
        return None if signaling.tampered is None else Failure(str(signaling.tampered))

    # Before taking a place: the program must be the link's, and the input fit it.
    consented = False
    if info is not None:
        signaling.described(info["program"])
        if (failure := tampered()) is not None:
            raise failure
        if signaling.program_problem is not None:
            raise Failure(signaling.program_problem)
        try:
            problem = check_input(info["program"], args.input)
        except (KeyError, TypeError, AttributeError):
            problem = None  # the welcome's program is checked again below
        if problem is not None:
            raise Failure(_input_problem(problem, args.input), 2)
        if chosen is not None:
            check_privacy(chosen["parties"], chosen["args"], args.accept_no_privacy)
        # The same code as the welcome's (both are checked against the link's hash): the
        # person is asked once.
        consented = consent_to_program(info["program"], session_id,
                                       trusted=args.trust_program)
    if args.allow_loopback:
        allow_loopback_candidates()

    display = StatusDisplay(enabled=not args.quiet)
    handler = getattr(args, "log_handler", None)
    if handler is not None and display.terminal:
        handler.setStream(display.guard(handler.stream))
    mesh: Mesh | None = None
    if made:
        display.tell(f"Made a new identity in {identity_path}: keep that file, it is how the "
                     "other parties recognise you from one session to the next.")
    display.tell(say("identity.yours", identity=me.did, fingerprint=me.fingerprint))
    talk = Conversation(signaling, display, memory, args.say)

    def stop_at_once(error: TamperError) -> None:
        # Whoever waits for signaling (joining, waiting for the start, connecting) is woken
        # by it; once the program computes nobody is, so it is ended as a broken link ends
        # it. The tampering is reported below either way.
        if mesh is not None and mesh.transports and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)

    signaling.on_tamper = stop_at_once
    # Signaling and the peer connections run on a thread of their own (network.py), the
    # program on this one: a busy MPyC does not silence the links.
    net = NetworkThread(new_event_loop)
    try:
        # The program is checked against the link before this returns.
        welcome = net.run(signaling.join())
    except PeerError as exc:
        net.run(signaling.close())
        net.stop()
        raise tampered() or Failure(str(exc)) from None
    pid, parties, program = welcome["pid"], welcome["parties"], welcome["program"]
    CONTEXT.party = str(pid)
    keep_place(places_file, session_id, resume, pid)
    log.info("joined as party %d of %d; program %s", pid, parties, program["name"])
    try:
        # What was verified now (the link's program, the creator's session): before any link.
        privacy_line = check_privacy(parties, program["args"], args.accept_no_privacy)
        consent_to_program(program, session_id, trusted=args.trust_program or consented)
    except Failure:
        net.run(signaling.close())
        net.stop()
        raise
    # From now on the display is the network thread's: its spinner turns there, even while
    # MPyC computes.
    net.call(display.joined, welcome, secret.fingerprint, privacy_line)
    net.call(talk.listen, net.loop)  # after the last question the person may be asked

    def name_parties(roster: dict[str, Any] | None) -> None:
        # What the program calls the parties in its result (programs.party_name): the
        # places' labels as sealed, the names as each party signed them (or it stopped).
        programs.set_party_names(welcome.get("labels") or [], (roster or {}).get("members"))

    def on_roster(roster: dict[str, Any]) -> None:  # on the network thread
        display.roster(roster)
        name_parties(roster)
        if mesh is not None:
            loop.call_soon_threadsafe(mesh.set_names, roster["members"])

    signaling.on_roster = on_roster
    signaling.on_news = display.note  # losing the server in the lobby, and coming back
    if signaling.roster is not None:  # it came with the welcome
        net.call(display.roster, signaling.roster)
    name_parties(signaling.roster)

    # Made on the network loop: it may make links at once, for what signaling heard so far.
    factory = net.call(lambda: AiortcFactory(
        signaling, list(welcome["ice_servers"]) + extra_ice, join_timeout=args.join_timeout,
        relay_only=bool(welcome.get("relay_only")), ordered=recovery is None))

    def peer_left(peer: int) -> None:  # on the network thread
        if mesh is not None:
            loop.call_soon_threadsafe(mesh.peer_left, peer)

    def peer_away(peer: int) -> None:  # on the network thread
        if mesh is not None:
            loop.call_soon_threadsafe(mesh.peer_away, peer)

    factory.on_peer_left = peer_left
    factory.on_peer_away = peer_away
    real_stdout = sys.stdout
    if real_stdout is not None and real_stdout.isatty():
        sys.stdout = display.guard(real_stdout)  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="mpyc-webrtc-") as workdir:
            problem = check_input(program, args.input)
            if problem is not None:
                raise Failure(_input_problem(problem, args.input), 2)
            if (reading := input_reading(program, args.input)) is not None:
                net.call(display.tell, f"Your input: {reading}")  # "Read as 52 000."
            try:
                path, code = prepare(program, Path(workdir), parties, pid, args.input)
                mpc = import_runtime(parties, pid, set_loop=lambda: asyncio.set_event_loop(loop),
                                     too_late=TOO_LATE)
            except ProgramFailed as exc:
                raise Failure(str(exc), exc.code) from None
            if mpc._loop is not loop:
                raise Failure(TOO_LATE)
            if (failure := tampered()) is not None:
                raise failure
            running = True

            def stop_program(error: Exception) -> None:
                # Ends the mpc.run(...) the program is blocked in; run_as_main says why.
                if running and loop.is_running():
                    loop.stop()

            # Channels stay open from one mpc.shutdown() to the next mpc.start(): a script
            # may start MPyC more than once (two `async with mpc:` blocks); they are closed
            # when the program ends.
            mesh = install_mesh(mpc, CrossingFactory(factory, net),
                                connect_timeout=args.connect_timeout,
                                on_failure=stop_program, keep_channels=True,
                                recovery=recovery)
            if signaling.roster is not None:
                mesh.set_names(signaling.roster["members"])
            try:
                with run_as_main(path, code, program["name"], lambda: mesh.failure) as pending:
                    if pending is not None:  # top-level await: run it on the loop
                        loop.run_until_complete(pending)
            except (ProgramFailed, MeshError) as exc:
                raise tampered() or Failure(str(exc), getattr(exc, "code", 1)) from None
            finally:
                running = False
            if (failure := tampered()) is not None:
                raise failure
            if mesh.failure is not None:
                raise Failure(str(mesh.failure))
            net.call(display.finished)
            return 0
    except BaseException:
        net.call(display.failed)
        raise
    finally:
        sys.stdout.flush()
        # Linger for the channels' closing handshakes only after an MPyC shutdown; a
        # program that never called mpc.shutdown() has nobody closing them.
        graceful = (mesh is not None and mesh.failure is None and mesh.closing
                    and signaling.tampered is None)
        if mesh is not None and mesh.failure is not None:
            run_to_the_end(loop, mesh.settle())  # the others hear why before the links go
        net.call(talk.close, net.loop)
        net.run(_close(factory, signaling, graceful))
        net.stop()
        display.close()
        sys.stdout = real_stdout


#: Most sessions whose place a native peer keeps (the oldest are forgotten first).
MAX_KEPT_PLACES = 100


def kept_places_path(identity_file: Path) -> Path:
    """Where the places this key held are kept: beside its identity file."""
    return identity_file.parent / "places.json"


def load_kept_places(path: Path, session_id: str) -> list[Any]:
    """The places this key held in ``session_id`` (``keep_place``), as kept."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get(session_id)
    except (OSError, ValueError, AttributeError):
        return []
    return found if isinstance(found, list) else []


def kept_place(found: list[Any], present: set[int]) -> tuple[str, int] | None:
    """Of the places kept (``load_kept_places``), a resume secret and pid whose party is not
    ``present`` (connected now: another peer of this user, which shares the config
    directory, holds it), if there is one."""
    for place in found:
        if not isinstance(place, dict):
            continue
        resume, pid = place.get("resume"), place.get("pid")
        if isinstance(resume, str) and isinstance(pid, int) and not isinstance(pid, bool) \
                and pid not in present:
            return resume, pid
    return None


def keep_place(path: Path, session_id: str, resume: str, pid: int) -> None:
    """Keep the resume secret of place ``pid`` in ``session_id`` (file mode 0600: it gets
    the place back), so that running ``join`` again with the same link takes it again."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, dict):
            records = {}
    except (OSError, ValueError):
        records = {}
    kept = records.pop(session_id, None)
    kept = [p for p in kept if isinstance(p, dict) and p.get("pid") != pid] \
        if isinstance(kept, list) else []
    records[session_id] = [*kept, {"resume": resume, "pid": pid}]
    while len(records) > MAX_KEPT_PLACES:
        del records[next(iter(records))]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".places-")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(records, out)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("could not keep this place for a later join in %s: %s", path, exc)


def own_identity(path: Path) -> tuple[Identity, bool]:
    """This party's key (``identity.load_or_create``); and whether it was just made."""
    try:
        return load_or_create(path)
    except IdentityError as exc:
        raise Failure(str(exc)) from None
    except OSError as exc:
        raise Failure(f"Cannot make the identity file {path}: {exc.strerror or exc}.") from None


def choose_place(wanted: str, info: dict[str, Any] | None,
                 chosen: dict[str, Any] | None) -> int:
    """The pid of the place ``--place`` names, from the session's description (its
    creator's sealed word on the places' labels, else the server's)."""
    if info is None:
        raise Failure("Cannot look up the places of this session (the server does not "
                      "describe it), so --place cannot be used.")
    source = chosen if chosen is not None else info
    parties = source.get("parties")
    labels = source.get("labels") or []
    if not isinstance(parties, int) or not isinstance(labels, list):
        raise Failure("The server describes this session without its places, so --place "
                      "cannot be used.")
    try:
        pid = places.find([str(x) for x in labels], parties, wanted)
    except ValueError as exc:
        raise Failure(f"--place {wanted!r}: {exc}.", 2) from None
    if pid is None:
        raise Failure(f"This session has no place {wanted.strip()!r}. Its places are "
                      f"{places.listing(labels, parties)}; give one as --place LABEL or "
                      "--place 'party N'.", 2)
    return pid


class KnownIdentities:
    """The known identities file of this party's key (``known``): read once before joining
    (a damaged file stops it there), each verified peer judged against what it held then
    and recorded at once."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.before = known.load(path)
        except known.KnownError as exc:
            raise Failure(str(exc), 2) from None

    def judge(self, did: str, name: str) -> tuple[str, dict[str, str]]:
        return known.recognise(self.before, did, name)

    def remember(self, did: str, name: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        try:
            try:  # as it is now: another party of this person may have added to it
                current = known.load(self.path)
            except known.KnownError:
                current = self.before
            known.save(self.path, known.record(current, did, name, now))
        except known.KnownError as exc:
            log.warning("%s", exc)


class Conversation:
    """What this party hears and says besides the computation: who each peer turned out to
    be (with the known identities' verdict), chat in both directions (``--say``, lines
    typed in a terminal)."""

    def __init__(self, signaling: Any, display: StatusDisplay, memory: KnownIdentities,
                 say_first: list[str]):
        self.signaling = signaling
        self.display = display
        self.memory = memory
        self.say_first = list(say_first)
        self._recorded: set[int] = set()
        self._reading = False
        signaling.on_identity = self.identity
        signaling.on_chat = self.chat
        signaling.on_chat_refused = self.refused
        signaling.on_start = self.start

    def identity(self, event: dict[str, Any]) -> None:
        peer, did, name = event["peer"], event["identity"], event.get("name") or ""
        key, fields = self.memory.judge(did, name)
        verdict = say(key, **{k: clean(v) for k, v in fields.items()})
        warning = key == "known.name_reused"
        lines = identity_lines(event, verdict, warning)
        self.display.tell(lines[0])
        if warning:
            if self.display.enabled:
                self.display.tell(lines[1], "bold red")
            else:
                log.warning("%s", lines[1])
        if peer not in self._recorded:
            self._recorded.add(peer)
            self.memory.remember(did, name)

    def chat(self, event: dict[str, Any]) -> None:
        self.display.tell(chat_line(event), again=True)

    def refused(self, message: str) -> None:
        if self.display.enabled:
            self.display.note(message)
        else:
            log.warning("chat not sent: %s", message)

    def start(self) -> None:
        for text in self.say_first:
            self.signaling.say(text)
        self.say_first = []

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a terminal, send each line typed."""
        stdin = sys.stdin
        if stdin is None or not stdin.isatty():
            return
        try:
            loop.add_reader(stdin.fileno(), self._typed)
        except (NotImplementedError, OSError, ValueError):
            return
        self._reading = True
        self.display.tell("Type a line and press Enter to write to the other parties.")

    def _typed(self) -> None:
        line = sys.stdin.readline()
        if not line:  # end of input: nothing more to read
            self.close(asyncio.get_event_loop())
            return
        if line.strip():
            self.signaling.say(line.strip())

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reading:
            self._reading = False
            try:
                loop.remove_reader(sys.stdin.fileno())
            except (OSError, ValueError):
                pass


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
    await signaling.close()
