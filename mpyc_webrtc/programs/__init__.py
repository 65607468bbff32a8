"""Built-in MPyC programs, what input each one asks for, and how each reports its result.

Each built-in is an ordinary MPyC script in this folder, written like MPyC's
demos, so it runs the same natively, in Pyodide, or with plain MPyC over TCP
(``python -m mpyc_webrtc.programs.sum -M3 -I0 --input=5``).

``CATALOG`` describes every built-in for the people choosing and joining a session:
a title, one line on what everyone learns and what stays secret, and an
``InputSpec`` that both renders the input field and checks what was typed into it.
A program reads its own input with ``read_input(name)``, calls a party what its people call
it with ``party_name(pid)`` ("Bob", or "party 2" where nobody named it) and reports its
answer with ``publish(Result(...))``.

This module is pure Python and imports MPyC only inside functions, so the session
server, the native peer and the browser worker can all import it cheaply.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

#: Inputs of sum, max and sort are 32-bit secure integers; every value must fit.
INPUT_BOUND = 2**31 - 1
MAX_INPUT_VALUES = 10_000

#: MPyC options that decide who the parties are: the mesh decides that, not the session.
_RESERVED_OPTIONS = ("-M", "-I", "--index", "-P", "-C", "--config", "-B", "--base-port",
                     "--ssl", "--output-windows", "--output-file", "-H", "--HELP", "-V",
                     "--VERSION", "-h", "--help")

_INPUT_KINDS = ("integer", "integers", "choice", "none")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def format_number(n: int) -> str:
    """An integer with thousands separators: 1,000,000."""
    return f"{n:,}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _got(text: str) -> str:
    """What the person typed, quoted and cut short for an error message."""
    text = text.strip()
    if len(text) > 30:
        text = text[:30] + "..."
    return repr(text)


#: How people group the digits of a whole number, as they type it: 52,000 (English),
#: 52.000 (German, Spanish, ...), 52 000 (French, ISO; also with a no-break or a narrow
#: no-break space, as phones and copied text have it) and 52'000 (Swiss). A separator counts
#: only between groups of exactly three digits, the same one throughout, so 52.5 or 1,5 are
#: no grouping (and refused: whole numbers only). In a list the comma separates the
#: numbers, so there it does not group.
GROUP_SEPARATORS = ",. \u00a0\u202f'\u2019"
_LIST_GROUP_SEPARATORS = GROUP_SEPARATORS.replace(",", "")
_GROUPED = {sep: re.compile(rf"[+-]?[0-9]{{1,3}}(?:{re.escape(sep)}[0-9]{{3}})+")
            for sep in GROUP_SEPARATORS}


def _parse_int(text: str, separators: str = "") -> int | None:
    """The whole number ``text`` writes, in ASCII digits, grouped in threes by one of
    ``separators`` or not; None if it writes none."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        sep = next((sep for sep in separators if _GROUPED[sep].fullmatch(text)), None)
        if sep is None:
            return None
        text = text.replace(sep, "")
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return None


def _plainly(n: int) -> str:
    """A number as nobody misreads it, whatever they group with: 52 000 (narrow no-break
    spaces between groups of three, as ISO 80000 writes it)."""
    return format_number(n).replace(",", "\u202f")


def _grouped_examples(n: int, separators: str) -> str:
    """``n`` plain and grouped with each separator people type: '52000, 52 000 or 52.000'."""
    forms = [str(n)] + [format_number(n).replace(",", sep) for sep in separators]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


@dataclass(frozen=True)
class InputSpec:
    """The private input a program asks each party for, and how to check it.

    ``kind`` is "integer" (one whole number), "integers" (comma-separated whole numbers),
    "choice" (one of ``choices``) or "none" (the program takes no input).
    ``label`` names the input as a noun phrase ("Your yearly salary"); error messages
    start with it. ``help`` is one plain line shown under the input field.
    """

    kind: str
    label: str
    help: str
    minimum: int | None = None
    maximum: int | None = None
    max_count: int = 100
    choices: tuple[tuple[str, str], ...] = ()
    #: An example value for an empty field; the page writes "e.g." before it.
    placeholder: str = ""

    def __post_init__(self):
        if self.kind not in _INPUT_KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice input needs choices")

    def _range(self) -> str:
        """'from 0 to 1,000', 'of at least 0', ... or '' when unbounded."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"from {format_number(low)} to {format_number(high)}"
        if low is not None:
            return f"of at least {format_number(low)}"
        if high is not None:
            return f"of at most {format_number(high)}"
        return ""

    def _in_range(self, value: int) -> bool:
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))

    def _grouping_example(self) -> int | None:
        """A number to show grouping with (the placeholder's, else 52000), or None when
        no allowed number has more than three digits."""
        if (self.maximum is not None and self.maximum < 1000
                and self.minimum is not None and self.minimum > -1000):
            return None
        example = _parse_int(self.placeholder) if self.placeholder else None
        if example is None or abs(example) < 1000 or not self._in_range(example):
            example = 52000
        return example

    def _written(self) -> str:
        """How a number may be written, as a clause: 'in digits, which may be grouped in
        threes like 52,000, 52 000 or 52.000' ('' without grouping: small numbers)."""
        example = self._grouping_example()
        if example is None:
            return ""
        if self.kind == "integers":
            return (f"; a number may be grouped in threes with spaces or dots, like "
                    f"{_grouped_examples(example, ' .')[len(str(example)) + 2:]}")
        return (f", in digits that may be grouped in threes, like "
                f"{_grouped_examples(example, ', .')}")

    def reading(self, text: str | None) -> str | None:
        """How a valid ``text`` was read, when it grouped digits: 'Read as 52 000.' (written
        so nobody misreads it), for the person to check before committing; else None."""
        if self.kind not in ("integer", "integers") or text is None:
            return None
        try:
            value = self.parse(text)
        except ValueError:
            return None
        parts = [text] if self.kind == "integer" else text.split(",")
        if all(_INTEGER.fullmatch(part.strip()) for part in parts):
            return None
        if self.kind == "integer":
            return f"Read as {_plainly(value)}."
        return f"Read as {len(value)} numbers: " + "; ".join(map(_plainly, value)) + "."

    def _choice_words(self) -> str:
        values = [value for value, _ in self.choices]
        if len(values) == 1:
            return values[0]
        return ", ".join(values[:-1]) + " or " + values[-1]

    def expected(self) -> str:
        """What a valid input looks like, as a phrase: 'a whole number from 0 to 100'."""
        bounds = self._range()
        if self.kind == "integer":
            return "a whole number" + (f" {bounds}" if bounds else "")
        if self.kind == "integers":
            return (f"up to {format_number(self.max_count)} whole numbers"
                    + (f" {bounds}" if bounds else "")
                    + ", separated by commas (like 3,1,2)")
        if self.kind == "choice":
            return self._choice_words()
        return "nothing"

    def parse(self, text: str | None) -> Any:
        """The value of ``text``, or ValueError with a sentence saying what is wrong.

        integer -> int, integers -> list[int], choice -> the choice's value, none -> None.
        """
        text = "" if text is None else str(text).strip()
        if self.kind == "none":
            if text:
                raise ValueError("This program takes no input.")
            return None
        if not text:
            verb = "choose" if self.kind == "choice" else "enter"
            raise ValueError(f"Please {verb} {_lower_first(self.label)}: {self.expected()}.")
        if self.kind == "integer":
            return self._whole(
                text, GROUP_SEPARATORS,
                f"{self.label} must be {self.expected()}{self._written()} (got {_got(text)}).",
                f"{self.label} must be {self.expected()}")
        if self.kind == "integers":
            if _GROUPED[","].fullmatch(text):
                # "52,000" in a list: one number grouped, or two? Not guessed.
                one = str(_parse_int(text, ","))
                parts = text.lstrip("+").split(",")
                many = {2: "two", 3: "three"}.get(len(parts), str(len(parts)))
                spaced = " ".join(parts)
                listed = ", ".join(parts[:-1]) + " and " + parts[-1]
                raise ValueError(
                    f"{text!r} could be one number ({one}) or {many} numbers ({listed}). "
                    f"For one number, write {one} or {spaced}; for {many}, put a space after "
                    f"each comma: {', '.join(parts)}.")
            parts = text.split(",")
            if len(parts) > self.max_count:
                raise ValueError(f"Please enter at most {format_number(self.max_count)} "
                                 f"numbers (got {format_number(len(parts))}).")
            unreadable = (f"{self.label} must be whole numbers separated by commas, "
                          f"like 3,1,2{self._written()} (got {_got(text)}).")
            return [self._whole(part, _LIST_GROUP_SEPARATORS, unreadable,
                                f"Every number must be {self._range()}") for part in parts]
        for value, label in self.choices:  # choice
            if text.lower() in (value.lower(), label.lower()):
                return value
        raise ValueError(f"{self.label} must be {self.expected()} (got {_got(text)}).")

    def _whole(self, text: str, separators: str, unreadable: str, out_of_range: str) -> int:
        """The whole number ``text`` (digits grouped by one of ``separators``, or not)."""
        value = _parse_int(text, separators)
        if value is None:
            raise ValueError(unreadable)
        if not self._in_range(value):
            raise ValueError(f"{out_of_range} (got {format_number(value)}).")
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "help": self.help,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "max_count": self.max_count,
            "choices": [{"value": value, "label": label} for value, label in self.choices],
            "placeholder": self.placeholder,
        }


@dataclass(frozen=True)
class ProgramSpec:
    """A built-in program as people choosing one see it."""

    name: str  # the module in this folder
    title: str
    summary: str  # one line: what everyone learns, what stays secret
    input: InputSpec
    group: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "summary": self.summary,
                "group": self.group, "input": self.input.to_json()}


_EVERYDAY = "Everyday questions"
_LISTS = "Number lists"


def _number_list(what: str) -> InputSpec:
    return InputSpec(
        "integers", "Your numbers",
        f"Whole numbers separated by commas, like 3,1,2. Nobody sees them; everyone learns "
        f"only {what}.",
        minimum=-INPUT_BOUND, maximum=INPUT_BOUND, max_count=MAX_INPUT_VALUES,
        placeholder="3,1,2")


#: Every built-in program, in the order they are offered.
CATALOG: dict[str, ProgramSpec] = {spec.name: spec for spec in (
    ProgramSpec(
        "average", "Average salary",
        "Everyone learns the average salary; each salary stays secret.",
        InputSpec("integer", "Your yearly salary",
                  "A whole number of euros, 0 to 1,000,000,000. Nobody sees it; everyone "
                  "learns only the average.",
                  minimum=0, maximum=10**9, placeholder="52000"),
        _EVERYDAY),
    ProgramSpec(
        "millionaires", "Who is richest? (millionaires)",
        "Everyone learns who has the most and how much (the lowest party number wins a tie); "
        "all other amounts stay secret.",
        InputSpec("integer", "Your wealth",
                  "A whole number, 0 to 1,000,000,000,000. Nobody sees it; everyone learns "
                  "only who has the most, and that amount.",
                  minimum=0, maximum=10**12, placeholder="1000000"),
        _EVERYDAY),
    ProgramSpec(
        "median", "Median and sorted values",
        "Everyone learns all numbers in sorted order and their median, but not who "
        "entered which.",
        InputSpec("integers", "Your numbers",
                  "1 to 100 whole numbers separated by commas, like 3,1,2. Everyone sees all "
                  "numbers sorted, but not whose they are.",
                  minimum=-10**9, maximum=10**9, max_count=100, placeholder="3,1,2"),
        _EVERYDAY),
    ProgramSpec(
        "santa", "Secret Santa",
        "Each party learns only whom they give a present to; nobody learns the rest of "
        "the draw.",
        InputSpec("none", "No input",
                  "Nothing to enter: the draw is random, and nobody gives to themselves."),
        _EVERYDAY),
    ProgramSpec(
        "vote", "Unanimous vote",
        "Everyone learns only whether all parties voted yes; no single vote, and not how "
        "many said no.",
        InputSpec("choice", "Your vote",
                  "Choose yes or no. Nobody sees your vote; everyone learns only whether all "
                  "votes were yes.",
                  choices=(("yes", "Yes"), ("no", "No"))),
        _EVERYDAY),
    ProgramSpec("sum", "Sum", "Everyone learns the sum of all numbers; each party's numbers "
                "stay secret.",
                _number_list("the sum of all numbers"), _LISTS),
    ProgramSpec("max", "Maximum", "Everyone learns the largest of all numbers, not whose it "
                "is; the other numbers stay secret.",
                _number_list("the largest number"), _LISTS),
    ProgramSpec("sort", "Sort", "Everyone learns all numbers in sorted order, but not who "
                "entered which.",
                _number_list("all numbers sorted, not whose they are"), _LISTS),
)}

#: name -> what it computes, as shown to people choosing a program.
BUILTIN: dict[str, str] = {name: spec.summary for name, spec in CATALOG.items()}


def catalog_json() -> list[dict[str, Any]]:
    """``CATALOG`` as JSON-ready dicts, in display order."""
    return [spec.to_json() for spec in CATALOG.values()]


def source(name: str) -> str:
    """The source text of a built-in program."""
    if name not in CATALOG:
        raise KeyError(name)
    return resources.files(__package__).joinpath(f"{name}.py").read_text()


def check_args(args: list[str]) -> None:
    """Refuse program arguments that would change who the parties are."""
    if len(args) > 64:
        raise ValueError("A program takes at most 64 arguments.")
    for arg in args:
        if len(arg) > 1000:
            raise ValueError("A program argument is longer than 1000 characters.")
        name = arg.split("=", 1)[0]
        for opt in _RESERVED_OPTIONS:
            if (
                # MPyC's parser accepts any unambiguous prefix of a long option: --ind=2
                (opt.startswith("--") and len(name) > 2 and opt.startswith(name))
                or (len(opt) == 2 and arg.startswith(opt) and not arg.startswith("--"))
            ):
                raise ValueError(
                    f"The argument {arg!r} is not allowed: the session decides the parties, "
                    "so -M, -I, -P, -C and the like are set for you."
                )


def parse_input(text: str) -> list[int]:
    """Parse a party's private input: an integer or a comma-separated list of integers.

    The generic check for any program; a built-in's own check is ``CATALOG[name].input``.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"Your input must be an integer or a comma-separated list of integers, "
            f"like 5 or 3,1,2 (got {text!r})."
        ) from None
    if len(values) > MAX_INPUT_VALUES:
        raise ValueError(f"Your input has {len(values)} numbers; the limit is "
                         f"{MAX_INPUT_VALUES}.")
    for v in values:
        if abs(v) > INPUT_BOUND:
            raise ValueError(f"The number {v} is too large: inputs must lie between "
                             f"-{INPUT_BOUND} and {INPUT_BOUND}.")
    return values


def _input_option(argv: list[str] | None) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--input")
    options, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return parser, options.input


def read_input(name: str, argv: list[str] | None = None) -> Any:
    """This party's ``--input`` for built-in ``name``, checked by its ``InputSpec``.

    ``argv`` defaults to ``sys.argv[1:]`` (MPyC ignores the options it does not know).
    A missing or bad input ends the program the way argparse does: the spec's sentence
    on stderr and exit status 2 -- before the program connects to anyone.
    """
    parser, text = _input_option(argv)
    try:
        return CATALOG[name].input.parse(text)
    except ValueError as exc:
        parser.error(str(exc))
        raise


def party_input(argv: list[str] | None = None) -> list[int]:
    """This party's ``--input`` as a list of integers (the generic ``parse_input``)."""
    parser, text = _input_option(argv)
    try:
        if text is None:
            raise ValueError("Please enter your input with --input, like --input=3,1,2.")
        return parse_input(text)
    except ValueError as exc:
        parser.error(str(exc))
        raise


async def secret_share_all(secint, values: list[int]) -> list:
    """Secret-share every party's list; returns them concatenated in pid order.

    How many numbers each party has is public (everyone learns the list lengths);
    the numbers themselves stay secret.
    """
    from mpyc.runtime import mpc

    counts = await mpc.transfer(len(values))
    shared = []
    for pid, count in enumerate(counts):
        if count == 0:
            continue
        own = [secint(v) for v in values] if pid == mpc.pid else [secint(None)] * count
        shared.extend(mpc.input(own, senders=pid))
    return shared


# --- results -------------------------------------------------------------------------------
#
# A program reports its answer once, as a Result. Two audiences read it: a terminal (or a
# plain MPyC run, or a log) gets ``to_text()`` on stdout, and the browser page, which shows
# the answer as a headline with a table of facts, gets ``to_json()`` through a hook the
# browser worker installs with ``set_result_hook``. Programs need not know which one runs them.

@dataclass
class Result:
    """What a program found, for people."""

    title: str
    headline: str  # the answer in one sentence
    rows: list[tuple[str, str]] = field(default_factory=list)  # (label, value) facts
    table: tuple[list[str], list[list[str]]] | None = None  # (columns, rows)
    private: bool = False  # True when each party gets a different answer

    def to_json(self) -> dict[str, Any]:
        table = None
        if self.table is not None:
            columns, rows = self.table
            table = {"columns": list(columns), "rows": [list(row) for row in rows]}
        return {"title": self.title, "headline": self.headline,
                "rows": [[label, value] for label, value in self.rows],
                "table": table, "private": self.private}

    def to_text(self) -> str:
        """Headline, then 'label: value' lines, then the table in aligned columns."""
        lines = [self.headline]
        lines += [f"{label}: {value}" for label, value in self.rows]
        if self.table is not None:
            columns, rows = self.table
            widths = [max(len(str(cell)) for cell in column)
                      for column in zip(columns, *rows, strict=False)]
            for row in [columns, *rows]:
                lines.append("  ".join(str(cell).rjust(width)
                                       for cell, width in zip(row, widths, strict=False)))
        return "\n".join(lines)


_result_hook: Callable[[dict[str, Any]], None] | None = None


# --- what people call the parties ---------------------------------------------------------
#
# A session's creator may name its places ("Alice", "hospital B"), and each person may give
# a name when joining. Whoever runs the program (the browser worker, the native peer) tells
# this module with ``set_party_names``: the labels from the session's sealed description,
# the names from the roster (each checked against the name its party signed, or the party
# stops). Run by plain MPyC, nobody does, and parties are "party 1", "party 2", ...

_labels: dict[int, str] = {}
_names: dict[int, str] = {}


def _clean(text: Any) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in str(text or "")).split())


def set_party_names(labels: Sequence[str] | None = None,
                    members: Iterable[dict[str, Any]] | None = None) -> None:
    """The places' ``labels`` (in pid order) and the ``members`` of a roster (``pid`` and
    ``name``; the server's default name ``party N`` is no name), from now on."""
    _labels.clear()
    _names.clear()
    for pid, label in enumerate(labels or ()):
        if _clean(label):
            _labels[pid] = _clean(label)
    for member in members or ():
        pid, name = member.get("pid"), _clean(member.get("name"))
        if isinstance(pid, int) and not isinstance(pid, bool) and name and name != f"party {pid}":
            _names[pid] = name


def _called(pid: int) -> str:
    label, name = _labels.get(pid, ""), _names.get(pid, "")
    if label and name and label.casefold() != name.casefold():
        return f"{name} ({label})"
    return label or name


def party_name(pid: int, *, start: bool = False) -> str:
    """What people call party ``pid``: its person's name or its place's label ("Bob", "Robert
    (Bob)" when both and they differ), or "party 2" for pid 1 (people count from 1) when it
    has neither; "(party 2)" is added when another party is called the same. ``start``: at
    the start of a sentence ("Party 2")."""
    called = _called(pid)
    if not called:
        return f"{'P' if start else 'p'}arty {pid + 1}"
    others = (_called(other) for other in set(_labels) | set(_names) if other != pid)
    if any(called.casefold() == other.casefold() for other in others):
        return f"{called} (party {pid + 1})"
    return called


def set_result_hook(fn: Callable[[dict[str, Any]], None] | None) -> None:
    """Also hand every published result, as JSON, to ``fn`` (None: stop doing so)."""
    global _result_hook
    _result_hook = fn


def publish(result: Result) -> None:
    """Report ``result``: its text on stdout, and its JSON to the result hook, if any."""
    print(result.to_text(), flush=True)
    hook = _result_hook
    if hook is not None:
        try:
            hook(result.to_json())
        except Exception:
            log.exception("The result hook failed")
