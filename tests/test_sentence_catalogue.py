"""Every word the pages show comes from one catalogue (mpyc_webrtc/sentences.py), so a
translation is another table and no code changes (issue 18, point 11).

Read statically, without a browser: the keys the HTML marks (``data-say*``) and the keys the
modules pass to ``say``, ``sayCount``, ``fail`` and ``stopTimer`` exist, with the fields they
need; and no module writes a sentence of its own (``test_no_inline_sentences``). The browser
side (the page really shows another table's words) is e2e/test_translation.py.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mpyc_webrtc.sentences import SENTENCES

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
FIELD = re.compile(r"\{(\w+)\}")
KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


# -- reading JavaScript: its string literals and the calls they sit in ------------------------

@dataclass
class Literal:
    text: str  # a template literal's ${...} parts read as {…}
    line: int
    calls: tuple[str, ...]  # the enclosing brackets, innermost last: a call's name, or ( [ {
    start: int  # offset of the opening quote


_CALLEE = re.compile(r"[\w$.]+$")
_REGEX_BEFORE = re.compile(r"\b(return|typeof|case)\s*$")


def literals(source: str) -> list[Literal]:
    """The string literals of a module (comments and regular expressions skipped), each
    with the calls it sits in: a small tokenizer, enough for this project's modules."""
    out: list[Literal] = []
    stack: list[str] = []
    i, n, line, prev = 0, len(source), 1, ""
    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if source.startswith("/*", i):
            end = source.find("*/", i + 2)
            line += source.count("\n", i, end)
            i = end + 2
            continue
        if c in "'\"`":
            j, text, first = i + 1, [], line
            while j < n and source[j] != c:
                if source[j] == "\\":
                    text.append(source[j + 1])
                    j += 2
                    continue
                if c == "`" and source.startswith("${", j):
                    depth, k = 1, j + 2
                    while k < n and depth:
                        depth += {"{": 1, "}": -1}.get(source[k], 0)
                        k += 1
                    text.append("{…}")
                    line += source.count("\n", j, k)
                    j = k
                    continue
                if source[j] == "\n":
                    line += 1
                text.append(source[j])
                j += 1
            out.append(Literal("".join(text), first, tuple(stack), i))
            i, prev = j + 1, "s"
            continue
        if c == "/" and (prev == "" or prev in "(,=:[!&|?{};+-*%<>~^"
                         or _REGEX_BEFORE.search(source[max(0, i - 12):i])):
            j, in_class = i + 1, False
            while j < n and source[j] != "\n":
                if source[j] == "\\":
                    j += 2
                    continue
                if source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                elif source[j] == "/" and not in_class:
                    break
                j += 1
            i, prev = j + 1, "r"
            continue
        if c == "(":
            match = _CALLEE.search(source[max(0, i - 80):i].rstrip())
            stack.append(match.group(0) if match else "(")
        elif c in "[{":
            stack.append(c)
        elif c in ")]}" and stack:
            stack.pop()
        if not c.isspace():
            prev = c
        i += 1
    return out


def modules() -> list[Path]:
    return sorted(WEB.glob("*.js"))


# -- the keys the modules and pages use ------------------------------------------------------

# Calls whose first argument is a key of the catalogue.
SAYING = re.compile(r"(^|\.)(say|sayCount|sayAnyway|count)$|^(fail|stopTimer)$")


@dataclass
class Use:
    where: str
    keys: list[str]  # the literal keys in the first argument (a ternary gives two)
    fields: set[str] | None  # the fields given, if a static reading can tell
    counted: bool  # sayCount: KEY.one and KEY.other, with {count} given


def _argument_span(source: str, open_at: int) -> tuple[int, int]:
    """(start, end) of the first argument of the call whose ``(`` is at ``open_at``, and
    (end, close) of the rest."""
    depth, i, first_end = 0, open_at, None
    quote = None
    while i < len(source):
        c = source[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return (first_end or i, i)
        elif c == "," and depth == 1 and first_end is None:
            first_end = i
        i += 1
    raise AssertionError("unbalanced call")


def uses() -> list[Use]:
    found = []
    for path in modules():
        if path.name in {"client.js", "sentences.js"}:
            continue  # the signaling core (client_scenarios.json), and what says itself
        source = path.read_text()
        for call in re.finditer(r"([\w$.]+)\(", source):
            name = call.group(1)
            if not SAYING.search(name) or name.startswith("this.hooks"):
                continue
            open_at = call.end() - 1
            first_end, close = _argument_span(source, open_at)
            first = source[open_at + 1:first_end]
            keys = [lit.text for lit in literals(first) if KEY.match(lit.text)]
            dynamic = [lit.text for lit in literals(first) if "{…}" in lit.text]
            if not keys and not dynamic:
                continue
            rest = source[first_end + 1:close].strip() if first_end < close else ""
            fields: set[str] | None = set()
            # stopTimer fills in its sentence's fields itself; a module's own ``const say``
            # (sealing.js's refusal) adds some: what they give cannot be read here.
            if name == "stopTimer" or (name == "say" and "const say = " in source):
                fields = None
            elif rest:
                if not rest.startswith("{") or "..." in rest:
                    fields = None  # not a literal object: cannot tell
                else:
                    inner = rest[1:rest.rfind("}")]
                    depth, parts, part = 0, [], ""
                    for c in inner:
                        depth += c in "([{"
                        depth -= c in ")]}"
                        if c == "," and depth == 0:
                            parts.append(part)
                            part = ""
                        else:
                            part += c
                    parts.append(part)
                    fields = {re.match(r"\s*(\w+)", p).group(1) for p in parts if p.strip()}
            line = source.count("\n", 0, call.start()) + 1
            where = f"web/{path.name}:{line}"
            for pattern in dynamic:  # say(`session.${...}`): some key must fit
                regex = re.escape(pattern).replace(re.escape("{…}"), r"[a-z0-9_]+")
                assert any(re.fullmatch(regex, key) for key in SENTENCES), (where, pattern)
            found.append(Use(where, keys, fields, name.endswith(("sayCount", "count"))))
    return found


def test_every_key_a_module_says_is_in_the_catalogue_with_its_fields():
    checked = uses()
    assert len(checked) > 150  # the reading found the calls (a broken reader finds none)
    problems = []
    for use in checked:
        for key in use.keys:
            forms = [f"{key}.one", f"{key}.other"] if use.counted else [key]
            for form in forms:
                if form not in SENTENCES:
                    problems.append(f"{use.where}: no sentence {form!r}")
                    continue
                if use.fields is None:
                    continue
                given = use.fields | ({"count"} if use.counted else set())
                missing = set(FIELD.findall(SENTENCES[form])) - given
                # A ternary's two keys share one object: each needs only what it names.
                if missing:
                    problems.append(f"{use.where}: {form!r} needs {sorted(missing)}")
    assert problems == []


@dataclass
class Mark:
    key: str
    what: str  # "text", or the attribute it fills
    fields: dict[str, str]  # a text's fields: the marked children, and their text
    line: int
    text: str  # the English the HTML has (a text's, with its children's; an attribute's)


class _Marks(HTMLParser):
    """The data-say* marks of a page, and its texts (whether under a data-say element)."""

    def __init__(self):
        super().__init__()
        self.open: list[dict] = []
        self.marks: list[Mark] = []
        self.texts: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        line = self.getpos()[0]
        for name, value in attrs.items():
            if name.startswith("data-say-") and name != "data-say-field":
                what = name.removeprefix("data-say-")
                self.marks.append(Mark(value, what, {}, line, attrs.get(what) or ""))
        element = {"tag": tag, "say": attrs.get("data-say"), "fields": {}, "line": line,
                   "field": attrs.get("data-say-field"), "text": "",
                   "code": tag in {"code", "script", "style", "pre"}}
        if element["field"] and tag in {"input", "img", "br"}:
            self._field_done(element)
        if tag not in {"input", "img", "meta", "link", "br"}:
            self.open.append(element)

    def _field_done(self, element):
        for outer in reversed(self.open):
            if outer["say"] is not None:
                outer["fields"][element["field"]] = " ".join(element["text"].split())
                break

    def handle_endtag(self, tag):
        while self.open:
            element = self.open.pop()
            if element["field"]:
                self._field_done(element)
            if element["say"] is not None:
                self.marks.append(Mark(element["say"], "text", element["fields"],
                                       element["line"], " ".join(element["text"].split())))
            if element["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self.open:
            element["text"] += data
        if data.strip() and not any(e["code"] for e in self.open):
            self.texts.append((" ".join(data.split()),
                               any(e["say"] is not None for e in self.open)))


def page_marks(name: str) -> _Marks:
    marks = _Marks()
    marks.feed((WEB / name).read_text())
    return marks


@pytest.mark.parametrize("name", ["join.html", "create.html"])
def test_every_key_a_page_marks_is_in_the_catalogue_with_its_fields(name):
    marks = page_marks(name).marks
    assert len(marks) > 25
    for mark in marks:
        where = f"web/{name}:{mark.line}"
        assert mark.key in SENTENCES, f"{where}: no sentence {mark.key!r}"
        needs = set(FIELD.findall(SENTENCES[mark.key]))
        if mark.what == "text":  # a field is a marked child, kept in its place
            assert needs == set(mark.fields), f"{where}: {mark.key!r} needs {needs}"
        else:
            assert not needs, f"{where}: an attribute's sentence has no fields"


# Text of the pages that is no sentence: placeholders filled in by the page.
PAGE_PLACEHOLDERS = {"…"}


@pytest.mark.parametrize("name", ["join.html", "create.html"])
def test_every_text_of_a_page_is_marked(name):
    # The English in the HTML stays (no flash of empty text), but each bit of it is under
    # a data-say element, so the table's words replace it.
    unmarked = [text for text, said in page_marks(name).texts
                if not said and text not in PAGE_PLACEHOLDERS]
    assert unmarked == []


@pytest.mark.parametrize("name", ["join.html", "create.html"])
def test_the_pages_english_is_the_catalogues(name):
    # The English kept in the HTML is the table's word for word (else an English page
    # would change as it loads, and the two copies would drift apart).
    for mark in page_marks(name).marks:
        fields = mark.fields
        said = FIELD.sub(lambda m, fields=fields: fields.get(m.group(1), m.group(0)),
                         SENTENCES[mark.key])
        assert " ".join(said.split()) == mark.text, f"web/{name}:{mark.line}: {mark.key}"


# -- no module writes a sentence of its own -----------------------------------------------

# Modules that are not the pages' words: the signaling core (its sentences come from the
# table it is given; checked by tests/client_scenarios.json), the worker (it tells the page
# keys, worker.step.* and worker.failed.*, and writes only to the log), and the catalogue's
# own module (its CANNOT_LOAD is held to the table below).
NOT_PAGES = {"client.js", "worker.js", "sentences.js"}

# Calls whose strings are for developers: the log, the console, errors only logs see.
DEVELOPER = re.compile(
    r"^(log|appendLog|console\..*|.*\.log|Error|TypeError|RangeError|ProtocolError|"
    r"IdentityError|SealingError|ServerError)$")

# What looks like a sentence to the reader below but is none, each with why.
NOT_SENTENCES = {
    "Shift", "Control", "Alt", "Meta", "Tab", "Escape", "Enter",  # keys (KeyboardEvent.key)
    "Content-Type",  # an HTTP header
}
# Sentinels compared in code, never shown: why an input cannot be used before Python said.
SENTINELS = {"not checked yet"}


def sentence_like(text: str) -> bool:
    """A capital letter then words (``Session full``, ``Copy``, ``Creating…``), or words
    ending like a sentence, or three lower-case words or more; after a sign such as ✓."""
    text = re.sub(r"^[^\w\s{(\"'/.-]+\s*", "", text.strip())
    return bool(
        re.match(r"^[A-Z][a-z']+([ ,:;—–-]+\S+)+", text)
        or re.match(r"^[A-Z][a-z]+[.…?!]?$", text)
        or (re.search(r"[a-z][.…?!:]$", text) and " " in text)
        or re.match(r"^[a-z']+( [a-z',]+){2,}$", text))


def inline_sentences(web: Path) -> list[str]:
    found = []
    for path in sorted(web.glob("*.js")):
        if path.name in NOT_PAGES:
            continue
        for lit in literals(path.read_text()):
            calls = [c for c in lit.calls if c not in "([{"]
            if any(DEVELOPER.match(c) for c in calls):
                continue
            if lit.text in NOT_SENTENCES or lit.text in SENTINELS or KEY.match(lit.text):
                continue
            if sentence_like(lit.text):
                found.append(f"web/{path.name}:{lit.line}: {lit.text[:70]!r}")
    return found


def test_the_reader_sees_a_sentence():
    # The guard below is only as good as this reader: it sees these, and not these.
    source = """
      setStatus('Connecting to the other parties');  // a status: a sentence
      fail('title.failed', `The page could not start: ${why}.`);  // an inline message
      ui.x.textContent = ok ? 'Copied.' : `Waiting for ${n} more parties`;
      log(`joined as party ${pid}`);  throw new Error('the sentences are not loaded yet');
      const r = /'quoted'/; const k = say('status.done');
      check.textContent = '✓ the code matches';
    """
    found = [(lit.text, lit.calls[-1:]) for lit in literals(source)]
    assert ("Connecting to the other parties", ("setStatus",)) in found
    assert ("The page could not start: {…}.", ("fail",)) in found
    looks = [text for text, _ in found if sentence_like(text)]
    assert looks == ["Connecting to the other parties", "The page could not start: {…}.",
                     "Copied.", "Waiting for {…} more parties",
                     "the sentences are not loaded yet", "✓ the code matches"]
    # ... of which the guard counts those outside the log and thrown errors: fail's
    # message too (its status is a key, and keys are no sentences).
    assert [lit.text for lit in literals(source) if sentence_like(lit.text)
            and not any(DEVELOPER.match(c) for c in lit.calls if c not in "([{")] == [
        "Connecting to the other parties", "The page could not start: {…}.", "Copied.",
        "Waiting for {…} more parties", "✓ the code matches"]


def test_no_inline_sentences():
    # Every sentence a page module writes comes from the catalogue (say('key')); a new
    # inline one fails here. Developer text (log, console, thrown errors only logs see) is
    # not a page's words.
    assert inline_sentences(WEB) == []


# -- the catalogue itself --------------------------------------------------------------------

def test_no_key_is_given_twice():
    # A dict literal keeps the last of two equal keys silently.
    tree = ast.parse((REPO / "mpyc_webrtc" / "sentences.py").read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                 and getattr(node.target, "id", "") == "SENTENCES")
    keys = [key.value for key in table.keys]
    assert len(keys) == len(set(keys))


def test_the_fallback_for_a_missing_table_is_the_tables_words():
    # sentences.js keeps a few English sentences for a page whose table did not load.
    source = (WEB / "sentences.js").read_text()
    block = source[source.index("export const CANNOT_LOAD = {"):]
    block = block[block.index("{"):block.index("\n};") + 2]
    block = re.sub(r"^\s*//.*$", "", block, flags=re.M)  # its comments
    fallback = json.loads(re.sub(r",\s*}", "}", block.replace("'", '"')))
    assert fallback and all(SENTENCES[key] == text for key, text in fallback.items())


def test_plural_forms_come_in_pairs():
    for key in SENTENCES:
        if key.endswith(".one"):
            assert key.removesuffix(".one") + ".other" in SENTENCES, key


# -- a translation: another table, no code ----------------------------------------------------

def pseudo(text: str) -> str:
    """A pseudo-locale's sentence: the English in brackets, its fields kept."""
    return f"[{text}]"


@pytest.fixture
def translations(tmp_path, monkeypatch):
    """A translations folder with a pseudo-locale (every sentence in brackets) as xx.json."""
    from mpyc_webrtc import sentences

    monkeypatch.setattr(sentences, "TRANSLATIONS", tmp_path)
    table = {key: pseudo(text) for key, text in SENTENCES.items()}
    table["status.opening"] = "[{nobody_fills_this}]"  # a field the English lacks
    table["no.such.key"] = "[?]"
    (tmp_path / "xx.json").write_text(json.dumps(table), encoding="utf-8")
    return tmp_path


def test_a_translation_is_a_file_of_sentences(translations):
    from mpyc_webrtc.sentences import document

    for lang in ("xx", "XX", "xx-YY", "xx_yy"):
        table = document(lang)
        assert table["status.connecting"] == "[Connecting to the other parties]"
        assert table["join.full"] == "[" + SENTENCES["join.full"] + "]"
    # What cannot be said in it stays English: a field nobody fills in, an unknown key.
    assert table["status.opening"] == SENTENCES["status.opening"]
    assert "no.such.key" not in table
    assert set(table) == set(SENTENCES)
    # No translation, or a language tag that is no name of a file: English.
    for lang in ("", "fr", "../xx", "xx/../xx", "x" * 40):
        assert document(lang) == SENTENCES


async def test_the_server_serves_the_language_asked_for(translations):
    from aiohttp.test_utils import TestClient, TestServer

    from signaling.app import create_app

    async with TestClient(TestServer(create_app(), host="127.0.0.1")) as client:
        english = await (await client.get("/api/sentences")).json()
        other = await (await client.get("/api/sentences?lang=xx-YY")).json()
    assert english == SENTENCES
    assert other["button.ready"] == "[I'm ready]"
