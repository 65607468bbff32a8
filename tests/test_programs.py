"""The built-in program library: input specs, results, the catalog, and real MPyC runs.

The real runs start every party as its own ``python -m mpyc_webrtc.programs.NAME``
process, talking MPyC's own TCP on 127.0.0.1 (ports from a per-run free base port).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from mpyc_webrtc import programs
from mpyc_webrtc.programs import CATALOG, InputSpec, Result

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120

SALARY = CATALOG["average"].input
WEALTH = CATALOG["millionaires"].input
NUMBERS = CATALOG["median"].input
VOTE = CATALOG["vote"].input
NOTHING = CATALOG["santa"].input
LIST = CATALOG["sum"].input


# --- InputSpec.parse --------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("0", 0), ("52000", 52000), (" 52000\n", 52000),
                                        ("+7", 7), ("1000000000", 10**9), ("007", 7)])
def test_integer_accepts(text, value):
    assert SALARY.parse(text) == value
    assert SALARY.reading(text) is None  # nothing to check: typed as it is read


@pytest.mark.parametrize("text,value", [
    ("52,000", 52000), ("52 000", 52000), ("52.000", 52000), ("52\u00a0000", 52000),
    ("52\u202f000", 52000), ("52'000", 52000), ("1,000,000,000", 10**9),
    ("1.000.000", 10**6), (" 1 000 000 ", 10**6), ("+52,000", 52000)])
def test_integer_accepts_digits_grouped_as_people_type_them(text, value):
    assert SALARY.parse(text) == value
    # The page shows how it was read, grouped so that nobody misreads it.
    assert SALARY.reading(text) == f"Read as {value:,}.".replace(",", "\u202f")
    assert programs.read_input("average", [f"--input={text}"]) == value  # as the program reads it


WRITTEN = ", in digits that may be grouped in threes, like 52000, 52,000, 52 000 or 52.000"


@pytest.mark.parametrize("text", [
    "abc", "52_000", "1.5", "52.5", "52,00", "52,0000", "1,000.000", "1.000,5", "52 000,5",
    "1e6", "--1", "5 5", "٣", "1,2,3", "9" * 5000])
def test_integer_rejects_saying_what_is_accepted(text):
    with pytest.raises(ValueError) as info:
        SALARY.parse(text)
    got = text.strip() if len(text.strip()) <= 30 else text.strip()[:30] + "..."
    assert str(info.value) == (f"Your yearly salary must be a whole number from 0 to "
                               f"1,000,000,000{WRITTEN} (got {got!r}).")


@pytest.mark.parametrize("text,got", [("-1", "-1"), ("1000000001", "1,000,000,001"),
                                      ("2.000.000.000", "2,000,000,000")])
def test_integer_out_of_range_writes_the_number_grouped(text, got):
    with pytest.raises(ValueError) as info:
        SALARY.parse(text)
    assert str(info.value) == (f"Your yearly salary must be a whole number from 0 to "
                               f"1,000,000,000 (got {got}).")


def test_grouping_is_shown_with_the_programs_own_example_and_not_for_small_numbers():
    with pytest.raises(ValueError) as info:
        CATALOG["millionaires"].input.parse("lots")
    assert str(info.value) == (
        "Your wealth must be a whole number from 0 to 1,000,000,000,000, in digits that may "
        "be grouped in threes, like 1000000, 1,000,000, 1 000 000 or 1.000.000 (got 'lots').")
    with pytest.raises(ValueError) as info:
        InputSpec("integer", "Your age", "", minimum=0, maximum=150).parse("x")
    assert str(info.value) == "Your age must be a whole number from 0 to 150 (got 'x')."


@pytest.mark.parametrize("text", [None, "", "   "])
def test_integer_requires_a_value(text):
    with pytest.raises(ValueError, match=r"^Please enter your yearly salary: a whole number "
                                         r"from 0 to 1,000,000,000\.$"):
        SALARY.parse(text)


def test_integer_message_for_one_sided_and_open_bounds():
    with pytest.raises(ValueError, match=r"^N must be a whole number of at least 3 \(got 2\)"):
        InputSpec("integer", "N", "", minimum=3).parse("2")
    with pytest.raises(ValueError, match=r"^N must be a whole number of at most -3 \(got 2\)"):
        InputSpec("integer", "N", "", maximum=-3).parse("2")
    with pytest.raises(ValueError) as info:
        InputSpec("integer", "N", "").parse("x")
    assert str(info.value) == f"N must be a whole number{WRITTEN} (got 'x')."
    assert InputSpec("integer", "N", "").parse("-10000000000000") == -10**13


@pytest.mark.parametrize("text,values", [("5", [5]), ("3,1,2", [3, 1, 2]),
                                         (" 1, -2 ,+3 ", [1, -2, 3]),
                                         ("-1000000000,1000000000", [-10**9, 10**9]),
                                         (",".join(["1"] * 100), [1] * 100)])
def test_integers_accept(text, values):
    assert NUMBERS.parse(text) == values


@pytest.mark.parametrize("text,values", [("52 000, 48.000,3", [52000, 48000, 3]),
                                         ("1 000 000, -7", [10**6, -7])])
def test_integers_accept_numbers_grouped_with_spaces_or_dots(text, values):
    assert NUMBERS.parse(text) == values
    assert NUMBERS.reading(text) == (f"Read as {len(values)} numbers: " + "; ".join(
        f"{v:,}".replace(",", "\u202f") for v in values) + ".")
    assert NUMBERS.reading("3,1,2") is None


@pytest.mark.parametrize("text", ["x", "1,,2", "1,2,", "1.5", "1;2", "1 2", "1_000", "3,a",
                                  "1.00, 2"])
def test_integers_reject_what_is_not_a_list(text):
    with pytest.raises(ValueError) as info:
        NUMBERS.parse(text)
    assert str(info.value) == (f"Your numbers must be whole numbers separated by commas, "
                               f"like 3,1,2; a number may be grouped in threes with spaces or "
                               f"dots, like 52 000 or 52.000 (got {text!r}).")


def test_a_number_grouped_with_commas_in_a_list_is_not_guessed():
    with pytest.raises(ValueError) as info:
        NUMBERS.parse("52,000")
    assert str(info.value) == (
        "'52,000' could be one number (52000) or two numbers (52 and 000). For one number, "
        "write 52000 or 52 000; for two, put a space after each comma: 52, 000.")
    assert NUMBERS.parse("3, 100") == [3, 100]
    assert NUMBERS.parse("3,100,2") == [3, 100, 2]


def test_integers_reject_numbers_out_of_range_and_too_many():
    with pytest.raises(ValueError) as info:
        NUMBERS.parse("1,-1000000001")
    assert str(info.value) == ("Every number must be from -1,000,000,000 to 1,000,000,000 "
                               "(got -1,000,000,001).")
    with pytest.raises(ValueError) as info:
        NUMBERS.parse(",".join(["1"] * 101))
    assert str(info.value) == "Please enter at most 100 numbers (got 101)."
    with pytest.raises(ValueError) as info:
        NUMBERS.parse("")
    assert str(info.value) == ("Please enter your numbers: up to 100 whole numbers from "
                               "-1,000,000,000 to 1,000,000,000, separated by commas "
                               "(like 3,1,2).")


def test_number_list_programs_keep_their_old_bounds():
    bound = programs.INPUT_BOUND
    assert LIST.parse(f"{-bound},{bound}") == [-bound, bound]
    assert len(LIST.parse(",".join(["0"] * programs.MAX_INPUT_VALUES))) == 10_000
    for text in [str(bound + 1), ",".join(["0"] * (programs.MAX_INPUT_VALUES + 1))]:
        with pytest.raises(ValueError):
            LIST.parse(text)


@pytest.mark.parametrize("text,value", [("yes", "yes"), (" no ", "no"), ("YES", "yes"),
                                        ("No", "no")])
def test_choice_accepts(text, value):
    assert VOTE.parse(text) == value


def test_choice_rejects():
    with pytest.raises(ValueError) as info:
        VOTE.parse("maybe")
    assert str(info.value) == "Your vote must be yes or no (got 'maybe')."
    with pytest.raises(ValueError) as info:
        VOTE.parse(None)
    assert str(info.value) == "Please choose your vote: yes or no."
    three = InputSpec("choice", "Colour", "", choices=(("r", "Red"), ("g", "Green"),
                                                        ("b", "Blue")))
    assert three.parse("green") == "g"
    with pytest.raises(ValueError, match=r"^Colour must be r, g or b \(got 'x'\)\.$"):
        three.parse("x")


def test_none_takes_no_input():
    assert NOTHING.parse(None) is None
    assert NOTHING.parse("  ") is None
    with pytest.raises(ValueError) as info:
        NOTHING.parse("5")
    assert str(info.value) == "This program takes no input."


def test_input_spec_checks_its_kind():
    with pytest.raises(ValueError):
        InputSpec("float", "x", "")
    with pytest.raises(ValueError):
        InputSpec("choice", "x", "")


def test_input_spec_to_json():
    assert VOTE.to_json() == {
        "kind": "choice", "label": "Your vote", "help": VOTE.help, "minimum": None,
        "maximum": None, "max_count": 100, "placeholder": "",
        "choices": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"}],
    }
    assert SALARY.to_json()["minimum"] == 0
    assert SALARY.to_json()["maximum"] == 10**9


def test_placeholders_are_examples_without_their_own_e_g():
    """The page shows a placeholder as "e.g. " + placeholder (web/input-view.js), so one
    that says "e.g." itself reads "e.g. e.g. 42"."""
    from mpyc_webrtc.launch import UPLOADED_INPUT

    placeholders = [spec.input.placeholder for spec in CATALOG.values()]
    placeholders.append(UPLOADED_INPUT["placeholder"])
    for placeholder in placeholders:
        assert "e.g." not in placeholder
    assert UPLOADED_INPUT["placeholder"] == "42 or 3,1,2"


# --- read_input / party_input ---------------------------------------------------------------

def test_read_input_from_argv():
    argv = ["-M", "3", "-I", "1", "--mix32-64bit", "--no-log", "--input= 52000"]
    assert programs.read_input("average", argv) == 52000
    assert programs.read_input("median", ["--input", "3,1"]) == [3, 1]
    assert programs.read_input("santa", ["-M3"]) is None
    assert programs.read_input("santa", ["--input="]) is None
    assert programs.party_input(["-M3", "--input=4,5"]) == [4, 5]


@pytest.mark.parametrize("name,argv,message", [
    ("average", ["-M3", "--input=abc"],
     f"Your yearly salary must be a whole number from 0 to 1,000,000,000{WRITTEN} "
     "(got 'abc')."),
    ("average", ["-M3"], "Please enter your yearly salary: a whole number from 0 to "
                         "1,000,000,000."),
    ("santa", ["--input=1"], "This program takes no input."),
])
def test_read_input_fails_like_argparse(capsys, name, argv, message):
    with pytest.raises(SystemExit) as info:
        programs.read_input(name, argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.rstrip().endswith(f": error: {message}")


# --- Result / publish -------------------------------------------------------------------------

def test_result_text_and_json():
    result = Result("Median", "The median is 2.", rows=[("Count", "3"), ("Maximum", "1,000")],
                    table=(["#", "Value"], [["1", "-5"], ["2", "2"], ["3", "1,000"]]))
    assert result.to_text() == "\n".join([
        "The median is 2.", "Count: 3", "Maximum: 1,000",
        "#  Value",
        "1     -5",
        "2      2",
        "3  1,000",
    ])
    assert result.to_json() == {
        "title": "Median", "headline": "The median is 2.",
        "rows": [["Count", "3"], ["Maximum", "1,000"]],
        "table": {"columns": ["#", "Value"], "rows": [["1", "-5"], ["2", "2"], ["3", "1,000"]]},
        "private": False,
    }
    json.dumps(result.to_json())


def test_a_party_is_called_by_its_name_or_label_else_by_its_number_from_1():
    try:
        programs.set_party_names()
        assert [programs.party_name(pid) for pid in range(3)] == ["party 1", "party 2",
                                                                  "party 3"]
        assert programs.party_name(1, start=True) == "Party 2"
        programs.set_party_names(["Alice", "", "  Carol\n "], [
            {"pid": 0, "name": "alice"},  # the same as the label: said once
            {"pid": 1, "name": "Robert"},
            {"pid": 2, "name": "party 2"},  # the server's default name is no name
        ])
        assert [programs.party_name(pid) for pid in range(3)] == ["Alice", "Robert", "Carol"]
        programs.set_party_names(["Bob", ""], [{"pid": 1, "name": "Robert"}])
        assert programs.party_name(0) == "Bob"
        programs.set_party_names(["", "Bob"], [{"pid": 0, "name": "Robert"}])
        assert programs.party_name(1, start=True) == "Bob"
        programs.set_party_names(["Bob", ""], [{"pid": 0, "name": "Robert"}])
        assert programs.party_name(0) == "Robert (Bob)"
        # Two people who call themselves the same get their numbers too.
        programs.set_party_names([], [{"pid": 0, "name": "Sam"}, {"pid": 2, "name": "sam"}])
        assert [programs.party_name(pid) for pid in range(3)] == [
            "Sam (party 1)", "party 2", "sam (party 3)"]
    finally:
        programs.set_party_names()


def test_plain_result_is_one_line():
    result = Result("Sum", "sum = 15")
    assert result.to_text() == "sum = 15"
    assert result.to_json() == {"title": "Sum", "headline": "sum = 15", "rows": [],
                                "table": None, "private": False}


def test_publish_prints_and_calls_the_hook(capsys, caplog):
    seen = []
    result = Result("Secret Santa", "You give a present to party 1.", private=True)
    try:
        programs.set_result_hook(seen.append)
        programs.publish(result)
        assert seen == [result.to_json()]
        assert capsys.readouterr().out == "You give a present to party 1.\n"

        def broken(_):
            raise RuntimeError("page gone")
        programs.set_result_hook(broken)
        with caplog.at_level(logging.ERROR, logger="mpyc_webrtc.programs"):
            programs.publish(result)  # does not raise
        assert "page gone" in caplog.text
        assert capsys.readouterr().out == "You give a present to party 1.\n"
    finally:
        programs.set_result_hook(None)
    programs.publish(result)
    assert len(seen) == 1


# --- catalog ----------------------------------------------------------------------------------

def test_catalog_order_groups_and_builtin():
    assert list(CATALOG) == ["average", "millionaires", "median", "santa", "vote",
                             "sum", "max", "sort"]
    assert {name: spec.group for name, spec in CATALOG.items()} == {
        **dict.fromkeys(["average", "millionaires", "median", "santa", "vote"],
                        "Everyday questions"),
        **dict.fromkeys(["sum", "max", "sort"], "Number lists"),
    }
    assert programs.BUILTIN == {name: spec.summary for name, spec in CATALOG.items()}
    catalog = json.loads(json.dumps(programs.catalog_json()))
    assert [entry["name"] for entry in catalog] == list(CATALOG)
    assert set(catalog[0]) == {"name", "title", "summary", "group", "input"}


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_program_has_a_module(name):
    spec = CATALOG[name]
    assert spec.name == name and spec.title and spec.summary and spec.input.help
    path = Path(programs.__file__).with_name(f"{name}.py")
    assert path.is_file()
    text = programs.source(name)
    assert text == path.read_text()
    assert f"read_input('{name}')" in text
    assert "async def main():" in text and "mpc.run(main())" in text
    assert "publish(Result(" in text


def test_source_refuses_unknown_names():
    for name in ["nope", "__init__", "../peer"]:
        with pytest.raises(KeyError):
            programs.source(name)


# --- real MPyC runs ---------------------------------------------------------------------------

def free_base_port(m: int) -> int:
    """A port b with b..b+m-1 free on 127.0.0.1 (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - m)
        socks = []
        try:
            for port in range(base, base + m):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def command(name: str, m: int, pid: int, base: int, text: str | None,
            labels: list[str] | None = None) -> list[str]:
    if labels is None:
        start = ["-m", f"mpyc_webrtc.programs.{name}"]
    else:  # as the native peer and the browser worker do: the places' names first
        start = ["-c", "import runpy, sys; from mpyc_webrtc import programs; "
                 f"programs.set_party_names({labels!r}); "
                 f"runpy.run_module('mpyc_webrtc.programs.{name}', run_name='__main__')"]
    cmd = [sys.executable, *start, "-M", str(m), "-I", str(pid),
           "-B", str(base), "--mix32-64bit", "--no-log"]
    return cmd + ([f"--input={text}"] if text is not None else [])


def run_parties(name: str, inputs: list[str | None],
                labels: list[str] | None = None) -> list[list[str]]:
    """Run one MPyC process per input; every party's stdout lines, in pid order."""
    m = len(inputs)
    base = free_base_port(m)
    procs = [subprocess.Popen(command(name, m, pid, base, text, labels), cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for pid, text in enumerate(inputs)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"{name} party failed ({proc.returncode}):\n{err[-3000:]}"
            results.append(out.splitlines())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_average_run():
    salaries = [52000, 48000, 56901]
    total = sum(salaries)
    average = (Decimal(total) / 3).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert f"{average:,.2f}" == "52,300.33"
    expected = [f"The average salary is {average:,.2f}.", "Parties: 3", f"Total: {total:,}",
                f"Average: {average:,.2f}"]
    assert run_parties("average", [str(s) for s in salaries]) == [expected] * 3


def test_millionaires_run_names_the_first_of_the_richest():
    wealth = [250_000, 10**12, 999_999, 10**12]
    # pid 1 (people count from 1: "party 2") is the first of the two richest.
    expected = ["Party 2 has the most: 1,000,000,000,000.", "Parties: 4", "Richest: party 2",
                "Amount: 1,000,000,000,000"]
    assert run_parties("millionaires", [str(w) for w in wealth]) == [expected] * 4


def test_millionaires_names_the_richest_as_people_call_them():
    names = ["Alice", "Bob", "Carol"]
    outs = run_parties("millionaires", ["5", "7", "7"], labels=names)
    assert outs == [["Bob has the most: 7.", "Parties: 3", "Richest: Bob", "Amount: 7"]] * 3


def test_median_run():
    lists = [[3, 1, 2], [10], [-4, 7, 8], [-1000000000]]
    ordered = sorted(v for values in lists for v in values)
    n = len(ordered)
    median = Fraction(ordered[(n - 1) // 2] + ordered[n // 2], 2)
    assert (n, median) == (8, Fraction(5, 2))
    expected = ["The median is 2.5.", "Count: 8", "Minimum: -1,000,000,000", "Median: 2.5",
                "Maximum: 10", "#           Value"]
    expected += [f"{i}  {v:>14,}" for i, v in enumerate(ordered, 1)]
    outs = run_parties("median", [",".join(map(str, values)) for values in lists])
    assert outs == [expected] * 4


def test_median_run_odd_count():
    outs = run_parties("median", ["5,1", "3"])
    assert outs[0][:5] == ["The median is 3.", "Count: 3", "Minimum: 1", "Median: 3",
                           "Maximum: 5"]
    assert outs[0] == outs[1]


@pytest.mark.parametrize("votes", [["yes", "yes"], ["yes", "no", "yes"]])
def test_vote_run(votes):
    if all(v == "yes" for v in votes):
        expected = ["Everyone voted yes.", f"Parties: {len(votes)}", "Unanimous: yes"]
    else:
        expected = ["Not unanimous: at least one party voted no. Nobody learns who, "
                    "or how many.", f"Parties: {len(votes)}", "Unanimous: no"]
    assert run_parties("vote", votes) == [expected] * len(votes)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_santa_run_is_a_derangement(m):
    outs = run_parties("santa", [None] * m)
    receivers = []
    for pid, lines in enumerate(outs):  # people count parties from 1: pid 0 is "party 1"
        assert lines[1:] == [f"You are: party {pid + 1}", f"Parties: {m}"]
        assert lines[0].startswith("You give a present to party ") and lines[0].endswith(".")
        receivers.append(int(lines[0].removeprefix("You give a present to party ")[:-1]) - 1)
    assert sorted(receivers) == list(range(m))
    assert all(receiver != pid for pid, receiver in enumerate(receivers))


def test_santa_names_whom_each_gives_to():
    """With places Alice, Bob and Carol, each learns a name, never its own."""
    names = ["Alice", "Bob", "Carol"]
    outs = run_parties("santa", [None] * 3, labels=names)
    receivers = []
    for pid, lines in enumerate(outs):
        assert lines[1:] == [f"You are: {names[pid]}", "Parties: 3"]
        receiver = lines[0].removeprefix("You give a present to ").removesuffix(".")
        assert receiver in names and receiver != names[pid], lines[0]
        receivers.append(receiver)
    assert sorted(receivers) == names


NUMBER_LISTS = [[5, -3], [1000], [7]]
ALL_NUMBERS = [v for values in NUMBER_LISTS for v in values]


@pytest.mark.parametrize("name,expected", [
    ("sum", f"sum = {sum(ALL_NUMBERS)}"),
    ("max", f"max = {max(ALL_NUMBERS)}"),
    ("sort", "sort = " + ",".join(map(str, sorted(ALL_NUMBERS)))),
])
def test_number_list_runs_print_one_line(name, expected):
    inputs = [",".join(map(str, values)) for values in NUMBER_LISTS]
    assert run_parties(name, inputs) == [[expected]] * 3


@pytest.mark.parametrize("name,text,message", [
    ("average", "abc",
     f"Your yearly salary must be a whole number from 0 to 1,000,000,000{WRITTEN} "
     "(got 'abc')."),
    ("average", None, "Please enter your yearly salary: a whole number from 0 to 1,000,000,000."),
    ("vote", "maybe", "Your vote must be yes or no (got 'maybe')."),
    ("median", "1,,2", "Your numbers must be whole numbers separated by commas, like 3,1,2; "
                       "a number may be grouped in threes with spaces or dots, like 52 000 "
                       "or 52.000 (got '1,,2')."),
    ("santa", "x", "This program takes no input."),
])
def test_bad_input_exits_before_connecting(name, text, message):
    # Nobody listens at the other parties' ports: a program that tried to connect would hang.
    proc = subprocess.run(command(name, 3, 0, free_base_port(3), text), cwd=ROOT, text=True,
                          capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f": error: {message}\n" in proc.stderr


def test_santa_needs_two_parties():
    proc = subprocess.run([sys.executable, "-m", "mpyc_webrtc.programs.santa", "--no-log"],
                          cwd=ROOT, text=True, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Secret Santa needs at least 2 parties." in proc.stderr
