"""One browser party: the session's program, run as ``mpyc-webrtc-peer`` runs it natively.

``sys.argv`` is ``[program, -M m, -I pid, *args, --input=VALUE]`` when ``mpyc.runtime`` is
first imported; ``install_mesh`` (the same seam as the native peer) makes
``mpc.start()``/``mpc.shutdown()`` open and close the page's data channels.

The program runs on the worker's own asyncio loop (``loop.RingLoop``), which blocks in
``Atomics.wait`` between events as a native loop blocks in ``select()``: so ``mpc.run(...)``,
``async with mpc`` and top-level ``await`` all work, in any browser with SharedArrayBuffer,
and a link that breaks stops the loop and so ends whatever the program waits for, with
that error, as natively.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpyc_webrtc import programs
from mpyc_webrtc.launch import (
    CONTEXT,
    LOG_FORMAT,
    ProgramFailed,
    check_input,
    import_runtime,
    privacy_sentence,
    run_as_main,
    run_to_the_end,
)
from mpyc_webrtc.launch import input_reading as launch_input_reading
from mpyc_webrtc.launch import prepare as prepare_program
from mpyc_webrtc.launch import privacy as launch_privacy
from mpyc_webrtc.launch import program_hash as launch_program_hash
from mpyc_webrtc.mesh import Mesh, MeshError, install_mesh, prepare_next_run
from mpyc_webrtc.recovery import setting

from .channel import Outbox, PageChannelFactory
from .inbox import Inbox
from .loop import JsMemory, RingLoop

log = logging.getLogger("py_worker.party")

#: Seconds to connect to everyone after the last party joined (as the native peer).
CONNECT_TIMEOUT = 20.0
#: How often the page hears how many messages were exchanged, while a run goes on.
TRAFFIC_INTERVAL = 0.5

Report = Callable[[str, str], None]


def setup_logging(level: int = logging.INFO) -> None:
    """Logs go to stderr (the worker shows them in the console and the page's log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CONTEXT)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]  # also keeps MPyC's logging.basicConfig off stdout
    root.setLevel(level)


def prepare() -> None:
    """Compile MPyC ahead of time (while the page loads), so that joining is quicker.

    Importing MPyC must wait for the session (it reads ``sys.argv``), compiling need not.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("mpyc")
    if spec is not None and spec.submodule_search_locations:
        compileall.compile_dir(next(iter(spec.submodule_search_locations)), quiet=1)


def input_problem(program: str, text: str) -> str | None:
    """Why ``text`` is not a usable input for the (JSON) program, or None."""
    return check_input(json.loads(program), text)


def input_reading(program: str, text: str) -> str | None:
    """How the (JSON) program reads a usable ``text`` with grouped digits, or None."""
    return launch_input_reading(json.loads(program), text)


def program_hash(program: str) -> str:
    """The hash of the (JSON) program, computed here from the code that would run."""
    return launch_program_hash(json.loads(program))


def privacy(program: str, parties: int) -> str:
    """How private the inputs are in this session (JSON: ``launch.privacy`` and its
    sentence), for the lobby to say before the person commits an input."""
    found = launch_privacy(parties, list(json.loads(program)["args"]))
    return json.dumps({**found, "sentence": privacy_sentence(found)})


#: The worker's inbox and loop, made once (``open_inbox``): MPyC keeps the loop it was
#: imported with, and every run of this page uses it.
_inbox: Inbox | None = None
_loop: RingLoop | None = None


def open_inbox(buffer: Any, outbox: Outbox, room: Callable[[], None]) -> None:
    """Read the page's SharedArrayBuffer ``buffer`` from now on (``ring.py``); ``outbox``
    asks the page to send and close, ``room()`` tells it there is room in the ring again."""
    global _inbox, _loop
    memory = JsMemory(buffer)
    _inbox = Inbox(memory, outbox, room)
    _loop = RingLoop(_inbox.wait, _inbox.deliver)


class Party:
    """This browser's party in one session; the worker makes one for the session.

    ``config`` (JSON) holds ``session``, ``pid``, ``parties``, ``program`` (as in the
    ``welcome`` message) and ``input`` (text or null). ``report(kind, detail)`` tells the
    page about progress: ``connected`` (detail: seconds it took), ``traffic`` (JSON
    {messages, bytes}) and ``result`` (the program's published ``programs.Result`` as JSON).
    What the page tells the run comes through the inbox (``control``).

    After a run that ended well the channels stay open: ``again(input)`` and another
    ``run()`` compute once more over them, when every party agreed to.
    """

    def __init__(self, config: str, report: Report, inbox: Inbox | None = None,
                 loop: RingLoop | None = None):
        cfg = json.loads(config)
        self.session: str = cfg["session"]
        self.pid: int = cfg["pid"]
        self.parties: int = cfg["parties"]
        self.program: dict[str, Any] = cfg["program"]
        self.input: str | None = cfg.get("input")
        #: Message recovery as the page's address chose it (``recovery.setting``).
        self.recovery = setting(cfg.get("recovery"))
        self.report = report
        self.name: str = self.program["name"]
        self.factory = PageChannelFactory(on_connected=self._connected)
        self.mesh: Mesh | None = None
        #: The roster's members (pid, name, label), for naming a party in errors.
        self.members: list[dict[str, Any]] = []
        programs.set_party_names()  # until the page names them (control "names")
        self.runs = 0
        inbox = inbox or _inbox
        loop = loop or _loop
        if inbox is None or loop is None:
            raise RuntimeError("open_inbox() first")
        self.loop = loop
        inbox.serve(self.factory, self.control)
        CONTEXT.session, CONTEXT.party = self.session, str(self.pid)
        setup_logging()

    # -- what the page tells the run, through the inbox --------------------------------------

    def control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "start":
            self.factory.start()
        elif kind == "peer-failed":
            self.factory.peer_failed(int(message["peer"]), str(message["reason"]))
        elif kind == "peer-left":
            peer = int(message["peer"])
            self.factory.peer_left(peer)
            if self.mesh is not None:
                self.mesh.peer_left(peer)
        elif kind == "peer-away":
            if self.mesh is not None:
                self.mesh.peer_away(int(message["peer"]))
        elif kind == "names":
            self.members = list(message["members"])
            # What the program calls the parties in its result (programs.party_name).
            programs.set_party_names(message.get("labels") or [], self.members)
            if self.mesh is not None:
                self.mesh.set_names(self.members)
        elif kind == "signaling-ended":
            self.factory.end(str(message["reason"]))
        else:
            log.warning("the page said %r, which this worker does not know", kind)

    def again(self, party_input: str | None) -> None:
        """The next ``run()`` computes once more, with this input, over the same channels."""
        self.input = party_input

    # -- the run --------------------------------------------------------------------------

    def run(self) -> str | None:
        """Run the program to its end (blocking); returns None when it finished, else what
        went wrong."""
        loop = self.loop
        self.runs += 1
        self.mesh = None
        programs.set_result_hook(self._result)
        problem: str | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="mpyc-webrtc-") as workdir:
                self._run(Path(workdir))
        except ProgramFailed as exc:
            problem = str(exc)
        finally:
            programs.set_result_hook(None)
            sys.stdout.flush()
            self._traffic()
            failure = self._mesh_failure()
            shut_down = self.mesh is not None and failure is None and self.mesh.closing
            if problem is not None or not shut_down:
                # Nothing more can run over these channels: close them (gracefully only
                # after MPyC's shutdown, when the others expect it).
                try:
                    if failure is not None and self.mesh is not None:
                        run_to_the_end(loop, self.mesh.settle())  # they hear why first
                    run_to_the_end(loop, self.factory.close(
                        graceful=shut_down, linger=10.0 if shut_down else 0.0))
                except Exception:
                    log.debug("closing the channels failed", exc_info=True)
        if problem is not None:
            return problem
        failure = self._mesh_failure()
        return None if failure is None else str(failure)

    def _mesh_failure(self) -> MeshError | None:
        return None if self.mesh is None else self.mesh.failure

    def _run(self, workdir: Path) -> None:
        loop = self.loop
        path, code = prepare_program(self.program, workdir, self.parties, self.pid,
                                     self.input, mpyc_set_up=self.runs > 1)
        started = time.monotonic()
        with loop.instead_of_the_browsers():  # MPyC keeps the loop it finds running
            mpc = import_runtime(self.parties, self.pid,
                                 set_loop=lambda: asyncio.set_event_loop(loop),
                                 too_late="MPyC was set up before this party joined; "
                                          "reload the page.")
        if mpc._loop is not loop:
            raise ProgramFailed("MPyC was set up before this party joined; reload the page.")
        log.info("MPyC set up in %.2f s", time.monotonic() - started)
        if self.runs > 1:
            prepare_next_run(mpc)
        running = True

        def stop_program(error: Exception) -> None:
            # Ends the mpc.run(...) the program is blocked in; run_as_main says why.
            if running and loop.is_running():
                loop.stop()

        self.mesh = install_mesh(mpc, self.factory, connect_timeout=CONNECT_TIMEOUT,
                                 on_failure=stop_program, keep_channels=True,
                                 recovery=self.recovery)
        self.mesh.set_names(self.members)
        traffic = loop.create_task(self._report_traffic())
        log.info("running %s as party %d of %d", self.name, self.pid, self.parties)
        try:
            with run_as_main(path, code, self.name, self._mesh_failure) as pending:
                if pending is not None:  # top-level await: run it on the loop
                    loop.run_until_complete(pending)
        finally:
            running = False
            traffic.cancel()

    def _connected(self, seconds: float) -> None:
        self._tell("connected", f"{seconds:.3f}")

    def _result(self, result: dict[str, Any]) -> None:
        self._tell("result", json.dumps(result))

    def _traffic(self) -> None:
        if self.mesh is not None and self.mesh.transports:
            self._tell("traffic", json.dumps(self.mesh.traffic()))

    async def _report_traffic(self) -> None:
        while True:
            await asyncio.sleep(TRAFFIC_INTERVAL)
            self._traffic()

    def _tell(self, kind: str, detail: str) -> None:
        try:
            self.report(kind, detail)
        except Exception:
            log.debug("could not report %s to the page", kind, exc_info=True)
