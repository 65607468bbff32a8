"""What a person agrees to before a native party computes: how private the session is
(``launch.privacy``), and an uploaded program (``native.consent``). No network: the rules
and sentences themselves; tests/test_native_peers.py runs them as a command."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mpyc_webrtc import launch
from mpyc_webrtc.native import cli
from mpyc_webrtc.native.consent import check_privacy, consent_to_program
from mpyc_webrtc.native.errors import Failure

UPLOADED = {"name": "stats.py", "args": [], "builtin": False,
            "source": "from mpyc.runtime import mpc\nprint('hello')\n"}


@pytest.mark.parametrize(("parties", "args", "threshold", "full"), [
    (2, [], 0, False),          # two parties: a share is the input itself
    (3, [], 1, True),
    (3, ["-T0"], 0, False),
    (5, [], 2, True),
    (5, ["-T1"], 1, False),     # below MPyC's default: treated as no privacy
    (5, ["--threshold", "1"], 1, False),
    (5, ["--threshold=2"], 2, True),
    (4, ["--no-log", "-T", "1"], 1, True),
    (3, ["-Tx"], 1, True),      # MPyC would refuse it; nothing lowered
])
def test_privacy_is_the_threshold_mpyc_will_use(parties, args, threshold, full):
    found = launch.privacy(parties, args)
    assert (found["threshold"], found["colluders"], found["full"]) == (
        threshold, threshold + 1, full)


def test_privacy_in_words():
    assert launch.privacy_sentence(launch.privacy(3, [])) == (
        "Private unless 2 parties collude: nobody sees your input, not even the server, "
        "unless 2 of the 3 parties work together.")
    assert launch.privacy_sentence(launch.privacy(2, [])).startswith("No privacy: ")
    assert launch.privacy_sentence(launch.privacy(5, ["-T1"])) == (
        "Less private than it could be: your input stays secret only unless 2 parties "
        "collude, where with 5 parties it could take 3.")


def test_joining_without_privacy_needs_the_persons_word():
    assert check_privacy(3, [], accepted=False).startswith("Private unless 2")
    with pytest.raises(Failure) as refused:
        check_privacy(2, [], accepted=False)
    assert refused.value.code == 2
    assert str(refused.value).startswith("No privacy: ")
    assert str(refused.value).endswith("join again with --accept-no-privacy; otherwise ask "
                                       "the session's creator for a session with more "
                                       "parties.")
    assert check_privacy(2, [], accepted=True).startswith("No privacy: ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_built_in_program_runs_without_asking():
    program = {"name": "sum", "args": [], "builtin": True}
    assert consent_to_program(program, "S", trusted=False, stdin=io.StringIO(),
                              out=io.StringIO()) is False  # nothing to agree to


def test_an_uploaded_program_needs_consent_without_a_terminal():
    out = io.StringIO()
    with pytest.raises(Failure) as refused:
        consent_to_program(UPLOADED, "S1", trusted=False, stdin=io.StringIO(), out=out)
    assert refused.value.code == 2
    path = Path(f"{__import__('tempfile').gettempdir()}/mpyc-webrtc-S1-stats.py")
    assert str(refused.value) == (
        "This session runs a program uploaded by the session's creator (fingerprint "
        f"{launch.fingerprint(UPLOADED)}), which would run on this computer with your "
        f"rights. It is saved in {path}: read it, and if you trust it, join again with "
        "--trust-program.")
    assert path.read_text() == UPLOADED["source"]  # saved, so it can be read first
    assert out.getvalue() == ""


def test_on_a_terminal_the_person_reads_the_code_and_answers():
    out = Terminal()
    with pytest.raises(Failure) as refused:
        consent_to_program(UPLOADED, "S2", trusted=False, stdin=Terminal("n\n"), out=out)
    assert refused.value.code == 2 and "nothing was run" in str(refused.value)
    shown = out.getvalue()
    assert "print('hello')" in shown and launch.fingerprint(UPLOADED) in shown
    assert shown.rstrip().endswith("[y/N]")
    assert consent_to_program(UPLOADED, "S2", trusted=False, stdin=Terminal("y\n"),
                              out=Terminal()) is True


def test_trust_program_runs_it_unasked():
    out = io.StringIO()
    assert consent_to_program(UPLOADED, "S3", trusted=True, stdin=io.StringIO(), out=out)
    assert out.getvalue() == ""


def test_create_refuses_a_built_in_for_two_parties_and_no_privacy_unasked(capsys):
    for argv, says in [
        (["create", "http://127.0.0.1:9", "-m", "2", "--program", "sum"],
         launch.BUILTIN_NEEDS_PARTIES),
        (["create", "http://127.0.0.1:9", "-m", "3", "--program", "sum", "--args", "-T0"],
         "No privacy: "),
    ]:
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("mpyc-webrtc-peer: error: " + says)
