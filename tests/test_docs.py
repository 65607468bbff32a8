"""docs/security.md names a test for every claim: a name that no longer exists would leave a
claim without its test, so every named test must be found where the page says it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECURITY = REPO / "docs" / "security.md"

#: `file::test`, `file::test[case]`, or `::test` for another test of the file named before it.
REFERENCE = re.compile(r"`((?:tests|e2e)/[\w/]+\.py)?(?:::(\w+)(?:\[([^\]`]+)\])?)?`")
#: A bare `[case]` after a reference: another case of the same test.
CASE = re.compile(r"`\[([^\]`]+)\]`")


def references(text: str) -> list[tuple[str, str | None, str | None]]:
    """Every (file, test, case) the page names, with the shorthands filled in."""
    found: list[tuple[str, str | None, str | None]] = []
    file = test = None
    tokens = re.finditer(r"`[^`\n]+`", text)
    for token in tokens:
        if case := CASE.fullmatch(token.group()):
            assert file and test, f"{token.group()} follows no test"
            found.append((file, test, case.group(1)))
            continue
        match = REFERENCE.fullmatch(token.group())
        if not match or not (match.group(1) or match.group(2)):
            continue
        file = match.group(1) or file
        assert file, f"{token.group()} follows no file"
        test = match.group(2)
        found.append((file, test, match.group(3)))
    return found


def missing(found: list[tuple[str, str | None, str | None]]) -> list[str]:
    """The references among ``found`` that name no file, no test of that file, or a case
    its file never spells."""
    gone = []
    for file, test, case in found:
        path = REPO / file
        if not path.is_file():
            gone.append(file)
            continue
        if test is None:
            continue
        source = path.read_text()
        names = {node.name for node in ast.parse(source).body
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        if test not in names:
            gone.append(f"{file}::{test}")
        elif case is not None and case not in source:
            gone.append(f"{file}::{test}[{case}]")
    return gone


def test_every_test_the_security_page_names_exists():
    found = references(SECURITY.read_text())
    assert len(found) > 80, len(found)  # the page is parsed, not skipped
    assert not missing(found), f"docs/security.md names tests that do not exist: {missing(found)}"


def test_a_renamed_test_or_case_would_be_caught():
    text = ("`tests/test_sealing.py::test_replay_is_no_longer_here`, "
            "`::test_vectors_seal_and_open`, `tests/test_tampering.py::"
            "test_tampered_signal_stops_its_receiver[flip-box]`, `[no-such-mode]`")
    found = references(text)
    assert found == [
        ("tests/test_sealing.py", "test_replay_is_no_longer_here", None),
        ("tests/test_sealing.py", "test_vectors_seal_and_open", None),
        ("tests/test_tampering.py", "test_tampered_signal_stops_its_receiver", "flip-box"),
        ("tests/test_tampering.py", "test_tampered_signal_stops_its_receiver", "no-such-mode")]
    assert missing(found) == [
        "tests/test_sealing.py::test_replay_is_no_longer_here",
        "tests/test_tampering.py::test_tampered_signal_stops_its_receiver[no-such-mode]"]
