"""What a native party shows on stderr about its session: the facts the browser lobby shows.

The formatting is pure (``joined_line``, ``roster_lines``, ``roster_changes``, ...), so it is
tested without a network. ``StatusDisplay`` prints it: styled with rich, with a live
"Computing… 3 s" line, when stderr is a terminal; otherwise plain text, one line per change,
never the same line twice in a row, so logs and tests read it easily.

Everything here goes to stderr: stdout is the program's result.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from .. import programs
from ..client import member_state, member_words
from ..sentences import SENTENCES, place, say

#: Seconds after which a plain display says the program is still running.
PLAIN_PROGRESS_AT = (10, 30, 60)
PLAIN_PROGRESS_EVERY = 60


def clean(text: Any) -> str:
    """Text from the server (names, labels) made safe to print: no control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def escaped(text: Any) -> str:
    """Text a person wrote (a chat message) shown as text: every control or formatting
    character written as its escape (``\\n``, ``\\x1b``, ``\\u202e``), so that it can
    neither move the cursor nor change what the terminal shows."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))


def who_is(peer: int, label: str = "") -> str:
    """``'hospital A' (party 1)`` for pid 0, or ``party 2`` for pid 1 without a label."""
    return place(peer, clean(" ".join(str(label or "").split())))


def key_fingerprint(did: str) -> str:
    """The fingerprint a person reads out for a did:key (``?`` if it is none)."""
    from ..identity import IdentityError, fingerprint, public_key

    try:
        return fingerprint(public_key(did))
    except IdentityError:
        return "?"


def identity_lines(event: dict[str, Any], verdict: str, warning: bool) -> list[str]:
    """What a peer's verified identity (the signaling client's ``identity`` event) looks
    like: ``party 1: Alice, did:key:z6Mk... (verified), fingerprint ABCD-...: new key``;
    a ``warning`` verdict (a known name on a new key) on a line of its own."""
    who = who_is(event["peer"], event.get("label") or "")
    name, did = clean(event.get("name") or ""), clean(event["identity"])
    line = (say("identity.verified", who=who, name=name, identity=did) if name
            else say("identity.verified_unnamed", who=who, identity=did))
    line += f", fingerprint {key_fingerprint(event['identity'])}"
    return [line + ".", verdict] if warning else [f"{line}: {verdict}"]


def chat_line(event: dict[str, Any]) -> str:
    """A chat message (the signaling client's ``chat`` event), as text only: who wrote it
    (place, name, key's fingerprint; "verified" once the key is the one on that party's
    peer connection) and what."""
    who = who_is(event["peer"], event.get("label") or "")
    if event.get("name"):
        who += f" {clean(event['name'])}"
    who += f" [{key_fingerprint(event.get('identity') or '')}"
    who += ", verified]" if event.get("bound") else "]"
    return say("chat.from", who=who, text=escaped(event.get("text", "")))


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def party_name(pid: int, label: str = "", name: str = "", me: int | None = None) -> str:
    """``party 2 (hospital B) "bob" (you)`` for pid 1: the place's number as people count
    (from 1), its label and the chosen name."""
    text = say("place.plain", number=pid + 1)
    if label:
        text += f" ({clean(label)})"
    if name and name != f"party {pid}":  # the server's default name adds nothing
        text += f' "{clean(name)}"'
    if me is not None and pid == me:
        text += " (you)"
    return text


def program_title(program: dict[str, Any]) -> str:
    """The program's title ('Average salary'), or its file name for an uploaded script."""
    if program.get("title"):
        return clean(program["title"])
    spec = programs.CATALOG.get(program.get("name", "")) if program.get("builtin") else None
    return spec.title if spec else clean(program.get("name", "?"))


def joined_line(welcome: dict[str, Any], fingerprint: str) -> str:
    """``Joined session X as party 1 (hospital B) of 3; program 'Average salary', ...``."""
    pid = welcome["pid"]
    labels = welcome.get("labels") or []
    label = labels[pid] if pid < len(labels) else ""
    program = welcome["program"]
    args = program.get("args") or []
    with_args = f" with arguments {clean(' '.join(args))!r}" if args else ""
    return (f"Joined session {clean(welcome['session'])} as {party_name(pid, label)} of "
            f"{welcome['parties']}; program {program_title(program)!r}{with_args}, "
            f"fingerprint {fingerprint}")


def member_line(member: dict[str, Any], started: bool, me: int | None) -> str:
    who = party_name(member["pid"], member.get("label", ""), member.get("name", ""), me)
    return f"{who[:1].upper()}{who[1:]}: {member_words(member, started)}"


def summary_line(roster: dict[str, Any]) -> str:
    """Where the session stands: who is missing, or which round runs."""
    parties = roster["parties"]
    present = [m for m in roster["members"] if m.get("state") != "left"]
    if roster.get("started"):
        round_ = roster.get("round", 1)
        if present and all(m.get("state") == "done" for m in present):
            return f"Round {round_} finished."
        return f"Round {round_} started: the parties connect to each other and compute."
    ready = sum(1 for m in present if m.get("ready"))
    missing = parties - len(present)
    stuck = [m for m in present if m.get("state") == "unsupported"]
    if stuck:  # no start until that place is someone's who can take part
        who = party_name(stuck[0]["pid"], stuck[0].get("label", ""), stuck[0].get("name", ""))
        return f"Waiting for {who} to take part from another browser (its own cannot)."
    if missing > 0:
        return (f"Waiting for {plural(missing, 'more party', 'more parties')} "
                f"({len(present)} of {parties} here, {ready} ready).")
    if ready < parties:
        return (f"All {parties} parties are here; waiting for "
                f"{plural(parties - ready, 'party', 'parties')} to be ready.")
    return f"All {parties} parties are here and ready."


def pair_line(pair: dict[str, Any]) -> str:
    """``Link 1<->3: ready (direct)`` (pids 0 and 2, as people count them): one pair's
    connection, as both ends report it."""
    state = pair["state"]
    words = say(f"pair.{state}") if f"pair.{state}" in SENTENCES else clean(state)
    text = f"Link {pair['a'] + 1}<->{pair['b'] + 1}: {words}"  # as people count parties
    if pair.get("path") and pair["state"] not in ("signaling", "connecting"):
        text += f" ({clean(pair['path'])})"
    return text


def roster_lines(roster: dict[str, Any], me: int | None = None) -> list[str]:
    """The whole roster as lines: each party present, where the session stands, and once
    it started each pair's connection."""
    started = bool(roster.get("started"))
    members = sorted(roster["members"], key=lambda m: m["pid"])
    lines = [member_line(m, started, me) for m in members]
    lines.append(summary_line(roster))
    if started:
        lines += [pair_line(p) for p in sorted(roster.get("pairs") or [],
                                               key=lambda p: (p["a"], p["b"]))]
    return lines


def roster_changes(before: dict[str, Any] | None, after: dict[str, Any],
                   me: int | None = None) -> list[str]:
    """The lines to print when the roster goes from ``before`` to ``after``: what is new,
    and who left without a trace (before the start the server drops leavers)."""
    if before is None:
        return roster_lines(after, me)
    old = set(roster_lines(before, me))
    now = {m["pid"] for m in after["members"]}
    gone = [m for m in sorted(before["members"], key=lambda m: m["pid"])
            if m["pid"] not in now and m.get("state") != "left"]
    lines = [member_line({**m, "state": "left"}, False, me) for m in gone]
    return lines + [line for line in roster_lines(after, me) if line not in old]


def elapsed(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class StatusDisplay:
    """Prints this party's view of the session to ``file`` (stderr).

    ``terminal`` (default: whether ``file`` is a terminal) chooses rich styling and a live
    status line; otherwise each change is one plain line. Disabled, it prints nothing.
    """

    def __init__(self, file: TextIO | None = None, *, enabled: bool = True,
                 terminal: bool | None = None, clock=time.monotonic):
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        if terminal is None:
            isatty = getattr(self.file, "isatty", None)
            terminal = bool(isatty and isatty())
        self.terminal = terminal
        self.clock = clock
        self.me: int | None = None
        self.console = None
        if enabled and terminal:
            self.console = _rich_console(self.file)
        self._roster: dict[str, Any] | None = None
        self._last_line: str | None = None
        self._started_at: float | None = None
        self._round = 0
        self._phase = ""
        self._status_shown = False
        self._timer: asyncio.TimerHandle | None = None
        self._next_progress = 0
        self._over = False
        self._finished = False
        self._frame = 0

    # -- events --------------------------------------------------------------------------

    def joined(self, welcome: dict[str, Any], fingerprint: str, privacy: str = "") -> None:
        """Joined: who this party is, the program, and (``privacy``) how private it is."""
        self.me = welcome["pid"]
        if not self.enabled:
            return
        if self.console is None:
            self._say(joined_line(welcome, fingerprint))
            if privacy:
                self._say(privacy)
            return
        from rich.panel import Panel
        from rich.text import Text

        program = welcome["program"]
        pid = welcome["pid"]
        labels = welcome.get("labels") or []
        label = labels[pid] if pid < len(labels) else ""
        body = Text()
        body.append("You are ")
        body.append(party_name(pid, label), style="bold")
        body.append(f" of {welcome['parties']} in session {clean(welcome['session'])}.\n")
        body.append("Program: ")
        body.append(program_title(program), style="bold")
        if program.get("args"):
            body.append(f" with arguments {clean(' '.join(program['args']))!r}")
        spec = programs.CATALOG.get(program.get("name", "")) if program.get("builtin") else None
        if spec is not None:
            body.append(f"\n{spec.summary}", style="dim")
        body.append("\nFingerprint: ")
        body.append(fingerprint, style="bold cyan")
        body.append("  (the join link's; every party checks it)", style="dim")
        if privacy:
            full = privacy.startswith("Private unless")
            body.append(f"\n{privacy}", style="green" if full else "bold red")
        self._clear_status()
        self.console.print(Panel(body, title="mpyc-webrtc", title_align="left",
                                 border_style="cyan", expand=False), soft_wrap=False)

    def roster(self, roster: dict[str, Any]) -> None:
        """A new ``roster`` message: print what changed."""
        before, self._roster = self._roster, roster
        if not self.enabled or self._finished or self._over:
            return  # after the end (or a failure), parties leaving is no news
        for line in roster_changes(before, roster, self.me):
            self._say(line)
        if roster.get("started") and roster.get("round", 1) != self._round and not self._over:
            self._round = roster.get("round", 1)
            self._started_at = self.clock()
            self._next_progress = 0
            self._start_timer()
        mine = next((m for m in roster["members"] if m["pid"] == self.me), None)
        self._phase = member_state(mine, bool(roster.get("started"))) if mine else ""

    def tell(self, line: str, style: str = "", *, again: bool = False) -> None:
        """A line for the person (who a peer is, a chat message); ``again``: even if it is
        the same as the line before."""
        if self.enabled and not self._over:
            if again:
                self._last_line = None
            self._say(line, style)

    def note(self, line: str) -> None:
        """A line about this party's own connection (losing the server, reconnecting)."""
        if self.enabled and not self._over:
            self._say(line, "yellow")

    def finished(self) -> None:
        if not self._over:
            self._finished = True
        self._end("Finished" + (f" in {self._since()}." if self._started_at else "."),
                  "bold green")

    def failed(self) -> None:
        """The run failed; the error itself is printed by the caller, after this."""
        if self._started_at is not None:
            self._end(f"Failed after {self._since()}.", "bold red")
        else:
            self._end(None, "")

    def close(self) -> None:
        self._over = True
        self._stop_timer()
        self._clear_status()

    def guard(self, stream: TextIO) -> TextIO:
        """``stream`` (stdout, or the log's stderr) made to clear the status line before
        each write, so the terminal stays readable. Plain displays need no guard."""
        if self.console is None:
            return stream
        return _ClearsStatus(stream, self)  # type: ignore[return-value]

    # -- output --------------------------------------------------------------------------

    def _say(self, line: str, style: str = "") -> None:
        if line == self._last_line:
            return
        self._last_line = line
        if self.console is None:
            # One write per line: the log's handler writes from MPyC's thread, and a
            # record must not land between a line and its end.
            self.file.write(line + "\n")
            self.file.flush()
            return
        self._clear_status()
        self.console.print(line, style=style or None, markup=False, emoji=False,
                           highlight=True)

    def _end(self, line: str | None, style: str) -> None:
        if self._over:
            return
        self.close()
        if line is not None and self.enabled:
            self._say(line, style)

    def _since(self) -> str:
        assert self._started_at is not None
        return elapsed(self.clock() - self._started_at)

    def _clear_status(self) -> None:
        if self._status_shown:
            self._status_shown = False
            self.file.write("\r\x1b[2K")
            self.file.flush()

    def _start_timer(self) -> None:
        self._stop_timer()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_soon(self._tick)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._stop_timer()
        if self._over or self._started_at is None:
            return
        seconds = self.clock() - self._started_at
        what = "Computing" if self._phase in ("computing", "done") else "Connecting"
        if self.console is not None:
            from rich.text import Text

            frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
            self._frame = (self._frame + 1) % len(frames)
            self._clear_status()
            self.console.print(Text.assemble((frames[self._frame], "cyan"),
                                             f" {what}… {elapsed(seconds)}"),
                               end="", highlight=False)
            self._status_shown = True
            delay = 0.1
        else:
            if seconds >= self._progress_due():
                self._say(f"Still {what.lower()} after {elapsed(seconds)}.")
                self._next_progress += 1
            delay = 1.0
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _progress_due(self) -> float:
        k = self._next_progress
        if k < len(PLAIN_PROGRESS_AT):
            return PLAIN_PROGRESS_AT[k]
        return PLAIN_PROGRESS_AT[-1] + PLAIN_PROGRESS_EVERY * (k - len(PLAIN_PROGRESS_AT) + 1)


class _ClearsStatus:
    """A text stream that first clears the display's status line."""

    def __init__(self, stream: TextIO, display: StatusDisplay):
        self._stream = stream
        self._display = display

    def write(self, text: str) -> int:
        if text:
            self._display._clear_status()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _rich_console(file: TextIO):
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    class Highlighter(RegexHighlighter):
        base_style = "status."
        highlights = [
            r"(?P<good>\b(ready|finished|computing|connected|direct)\b)",
            r"(?i)(?P<busy>\b(exchanging connection details|connecting|choosing an input|"
            r"waiting for|reconnecting)\b)",
            r"(?P<bad>\b(failed|could not connect|left the session)\b)",
            r"(?P<over>\bclosed\b)",
            r"(?P<relay>\brelayed\b)",
            r"(?P<you>\(you\))",
        ]

    theme = Theme({"status.good": "green", "status.busy": "yellow", "status.bad": "red",
                   "status.relay": "magenta", "status.over": "dim", "status.you": "bold"})
    return Console(file=file, force_terminal=True, highlighter=Highlighter(), theme=theme,
                   soft_wrap=True)
