"""One browser party: the session's program, run as ``mpyc-webrtc-peer`` runs it natively.

``sys.argv`` is ``[program, -M m, -I pid, *args, --input=VALUE]`` when ``mpyc.runtime`` is
first imported; ``install_mesh`` (the same seam as the native peer) makes
``mpc.start()``/``mpc.shutdown()`` open and close the browser's data channels.

Programs run inside ``pyodide.runPythonAsync``, on the browser's event loop, so they may
use top-level ``await`` (``await mpc.start()``). Unmodified scripts that call
``mpc.run(...)`` block in it through JSPI (``pyodide.ffi.run_sync``), where the browser
has it. If a link to another party breaks, whatever the program waits for ends with that
error instead of hanging.
"""

from __future__ import annotations

import asyncio
import inspect
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
    error_message,
    import_runtime,
    privacy_sentence,
    run_as_main,
)
from mpyc_webrtc.launch import prepare as prepare_program
from mpyc_webrtc.launch import privacy as launch_privacy
from mpyc_webrtc.launch import program_hash as launch_program_hash
from mpyc_webrtc.mesh import Mesh, MeshError, install_mesh, prepare_next_run

from .channel import JsChannelFactory
from .loop import install as batch_callbacks

log = logging.getLogger("py_worker.party")

#: Seconds to connect to everyone after the last party joined (as the native peer).
CONNECT_TIMEOUT = 20.0
#: How often the page hears how many messages were exchanged, while a run goes on.
TRAFFIC_INTERVAL = 0.5

NO_RUN_SYNC = (
    "This browser cannot run MPyC scripts that call mpc.run(...): it lacks JavaScript "
    "Promise Integration (JSPI). Scripts written in the async style work here: use "
    "'await mpc.start()', 'await mpc.output(...)' and 'await mpc.shutdown()' at the top "
    "level of the script instead of mpc.run(...). A recent Chrome or Edge runs both styles."
)

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


def program_hash(program: str) -> str:
    """The hash of the (JSON) program, computed here from the code that would run."""
    return launch_program_hash(json.loads(program))


def privacy(program: str, parties: int) -> str:
    """How private the inputs are in this session (JSON: ``launch.privacy`` and its
    sentence), for the lobby to say before the person commits an input."""
    found = launch_privacy(parties, list(json.loads(program)["args"]))
    return json.dumps({**found, "sentence": privacy_sentence(found)})


class Party:
    """This browser's party in one session; the worker makes one per run.

    ``config`` (JSON) holds ``session``, ``pid``, ``parties``, ``program`` (as in the
    ``welcome`` message) and ``input`` (text or null). ``report(kind, detail)`` tells the
    page about progress: ``connected`` (detail: seconds it took), ``channel`` (detail: the
    pid whose channel opened), ``traffic`` (JSON {messages, bytes}) and ``result`` (the
    program's published ``programs.Result`` as JSON).

    After a run that ended well the channels stay open: ``again(input)`` and another
    ``run()`` compute once more over them, when every party agreed to.
    """

    def __init__(self, config: str, report: Report):
        cfg = json.loads(config)
        self.session: str = cfg["session"]
        self.pid: int = cfg["pid"]
        self.parties: int = cfg["parties"]
        self.program: dict[str, Any] = cfg["program"]
        self.input: str | None = cfg.get("input")
        self.report = report
        self.name: str = self.program["name"]
        self.factory = JsChannelFactory(on_connected=self._connected,
                                        on_channel_open=self._channel_open)
        self.mesh: Mesh | None = None
        #: The roster's members (pid, name, label), for naming a party in errors.
        self.members: list[dict[str, Any]] = []
        self.runs = 0
        self._abort: asyncio.Future[None] | None = None
        CONTEXT.session, CONTEXT.party = self.session, str(self.pid)
        setup_logging()

    # -- what the page reports (called from JS, in the task that received the message) ----

    def add_channel(self, peer: int, dc: Any) -> None:
        self.factory.add_channel(peer, dc)

    def start(self) -> None:
        self.factory.start()

    def peer_failed(self, peer: int, reason: str) -> None:
        self.factory.peer_failed(peer, reason)

    def set_names(self, members_json: str) -> None:
        """Names and places from the roster, for messages about a party."""
        self.members = json.loads(members_json)
        if self.mesh is not None:
            self.mesh.set_names(self.members)

    def peer_left(self, peer: int) -> None:
        self.factory.peer_left(peer)
        if self.mesh is not None:
            self.mesh.peer_left(peer)

    def signaling_ended(self, reason: str) -> None:
        self.factory.end(reason)

    def again(self, party_input: str | None) -> None:
        """The next ``run()`` computes once more, with this input, over the same channels."""
        self.input = party_input

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> str | None:
        """Run the program; returns None when it finished, else what went wrong."""
        loop = asyncio.get_running_loop()
        batch_callbacks(loop)
        self._abort = loop.create_future()
        self.runs += 1
        self.mesh = None
        programs.set_result_hook(self._result)
        traffic = asyncio.ensure_future(self._report_traffic())
        problem: str | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="mpyc-webrtc-") as workdir:
                await self._run(Path(workdir))
        except ProgramFailed as exc:
            problem = str(exc)
        finally:
            traffic.cancel()
            programs.set_result_hook(None)
            sys.stdout.flush()
            self._traffic()
            failure = self._mesh_failure()
            shut_down = self.mesh is not None and failure is None and self.mesh.closing
            if problem is not None or not shut_down:
                # Nothing more can run over these channels: close them (gracefully only
                # after MPyC's shutdown, when the others expect it).
                try:
                    await self.factory.close(graceful=shut_down,
                                             linger=10.0 if shut_down else 0.0)
                except Exception:
                    log.debug("closing the channels failed", exc_info=True)
        if problem is not None:
            return problem
        failure = self._mesh_failure()
        return None if failure is None else str(failure)

    def _mesh_failure(self) -> MeshError | None:
        return None if self.mesh is None else self.mesh.failure

    async def _run(self, workdir: Path) -> None:
        path, code = prepare_program(self.program, workdir, self.parties, self.pid,
                                     self.input, mpyc_set_up=self.runs > 1)
        started = time.monotonic()
        mpc = import_runtime(self.parties, self.pid,
                             too_late="MPyC was set up before this party joined; reload "
                                      "the page.")
        log.info("MPyC set up in %.2f s", time.monotonic() - started)
        if self.runs > 1:
            prepare_next_run(mpc)
        self.mesh = install_mesh(mpc, self.factory, connect_timeout=CONNECT_TIMEOUT,
                                 on_failure=self._mesh_failed, keep_channels=True)
        self.mesh.set_names(self.members)
        mpc.run = self._blocking_run
        self._watch_program_errors(mpc._loop)
        log.info("running %s as party %d of %d", self.name, self.pid, self.parties)
        with run_as_main(path, code, self.name, self._mesh_failure) as pending:
            if pending is not None:  # top-level await
                await self._unless_failed(pending)

    # -- making mpc.run block, and failures end whatever the program waits for ---------------

    def _blocking_run(self, awaitable: Any) -> Any:
        """``mpc.run`` for the browser: blocks via JSPI until ``awaitable`` is done."""
        from pyodide.ffi import can_run_sync, run_sync

        if not can_run_sync():
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise ProgramFailed(NO_RUN_SYNC)
        return run_sync(self._unless_failed(awaitable))

    async def _unless_failed(self, awaitable: Any) -> Any:
        """Await ``awaitable``, but raise at once if the mesh or the program failed."""
        task = asyncio.ensure_future(awaitable)
        abort = self._abort
        assert abort is not None
        await asyncio.wait({task, abort}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        abort.result()  # raises the failure
        raise ProgramFailed("The program was stopped.")

    def _mesh_failed(self, error: MeshError) -> None:
        self._stop(ProgramFailed(str(error)))

    def _watch_program_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """An exception in an MPyC coroutine makes MPyC stop the loop natively (a no-op in
        the browser); here it ends the program with that error."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            in_callback = "handle" in context  # MPyC's handler deletes it: look first
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            if in_callback and exc is not None and not isinstance(exc, asyncio.CancelledError):
                self._stop(ProgramFailed(error_message(self.name, exc)))

        loop.set_exception_handler(handler)

    def _stop(self, error: ProgramFailed) -> None:
        if self._abort is not None and not self._abort.done():
            self._abort.set_exception(error)
            self._abort.exception()  # retrieved: no "never retrieved" warning

    def _connected(self, seconds: float) -> None:
        self._tell("connected", f"{seconds:.3f}")

    def _channel_open(self, peer: int) -> None:
        self._tell("channel", str(peer))

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
