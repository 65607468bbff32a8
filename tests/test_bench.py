"""The benchmark keeps working: a quick run completes with every result checked."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.netns
def test_quick_benchmark_runs_and_prints_the_ratio_table():
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for workload in ("mul", "sort", "inner", "TOTAL"):
        assert rows[workload][-1].endswith("x"), done.stdout
    assert "open" in done.stdout and "after the last party joined" in done.stdout


@pytest.mark.netns
@pytest.mark.slow
def test_quick_evaluation_covers_every_transport_and_writes_the_report(tmp_path):
    """python -m bench.evaluate --quick: one tiny workload over TCP, the WireGuard mesh, native
    WebRTC (direct and relayed) and browsers (Chromium and Firefox), each result checked by
    party 0; each browser's page open to ready is timed; the report and its plot are
    written."""
    done = subprocess.run([sys.executable, "-m", "bench.evaluate", "--quick",
                           "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = (tmp_path / "evaluation.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| workload"))
    assert header == ("| workload (size) | TCP | WireGuard mesh | WebRTC native | "
                      "WebRTC via TURN | WebRTC Chromium | WebRTC Firefox |")
    row = next(line for line in report.splitlines() if line.startswith("| rounds"))
    cells = row.strip("|").split("|")[1:]
    assert len(cells) == 6
    for cell in cells[1:]:  # each with its ratio to TCP, bytes and time to connect
        assert re.search(r"\d+\.\d{3} s \(\d+\.\d\dx\)<br>\d+\.\d\d MB, connect \d+\.\d\d s",
                         cell), cell
    assert "## Setup effort per party" in report
    for browser in ("Chromium", "Firefox"):
        assert re.search(rf"\| {browser} \| plain links [^|]* \| \d+\.\d\d s \| \d+\.\d\d s \|",
                         report), report
    assert re.search(r"\| 2 native \| 1 \| \d+\.\d\d s \| \d+\.\d\d ms \|", report), report
    assert (tmp_path / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the evaluation's conditions, variants and merging, without running anything ------------

def _data(conditions: list[str], columns: list[str], seconds: float = 1.0) -> dict:
    """A made-up run: every workload of size 1, each column ``seconds`` (TCP 1 s)."""
    from bench import evaluate as e

    conds = [c for c in e.CONDITIONS if c.name in conditions]
    cells = {(c.name, w.name, t): e.Cell([1.0 if t == "tcp" else seconds], [0.5], [1000])
             for c in conds for w in e.WORKLOADS for t in columns}
    return {"cells": cells, "conditions": conds, "workloads": list(e.WORKLOADS),
            "transports": columns, "repeat": 1, "setup": {}, "scale": {}, "ready": {},
            "retried": [], "sizes": {(c.name, w.name): 1 for c in conds for w in e.WORKLOADS},
            "repeats": {c.name: 1 for c in conds}, "scale_rounds": 200,
            "skipped_variants": []}


def test_loss_conditions_are_per_path_figures():
    """A party-to-party path crosses two access links: 1% and 3% per path, 10 ms RTT."""
    from bench import evaluate as e

    by_name = {c.name: c for c in e.CONDITIONS}
    assert e.LOSS_CONDITIONS == ("loss1", "loss1rtt10", "loss3rtt10")
    for name, per_path, rtt in (("loss1", 0.01, 0), ("loss1rtt10", 0.01, 10),
                                ("loss3rtt10", 0.03, 10)):
        c = by_name[name]
        assert abs(1 - (1 - c.loss) ** 2 - per_path) < 0.001, name
        assert 4 * c.delay_ms == rtt
    # Latency-bound workloads have their own (smaller) sizes on the slow lossy links.
    rounds = next(w for w in e.WORKLOADS if w.name == "rounds")
    assert rounds.size("loss3rtt10") < rounds.size("plain")


def test_variants_become_columns_with_their_environment(monkeypatch):
    from bench import evaluate as e

    monkeypatch.setenv("MPYC_WEBRTC_RECOVERY", "0")  # the caller's shell must not leak in
    cols = e.columns(["tcp", "webrtc", "browser"], ["no-recovery"])
    assert cols == ["tcp", "webrtc", "webrtc:no-recovery", "browser", "browser:no-recovery"]
    # A browser's SCTP is its own: no browser column for that switch.
    assert e.columns(["browser"], ["no-sctp-recovery"]) == ["browser"]
    script = e.browser_switches(e.VARIANTS["no-message-recovery"])
    assert script is not None and "?recovery=0" in script
    assert e.label("webrtc:no-recovery") == "WebRTC native, no recovery"
    default, off = e.native_env("webrtc"), e.native_env("webrtc:no-recovery")
    assert not set(e.RECOVERY_SWITCHES) & set(default)
    assert {k: off[k] for k in e.RECOVERY_SWITCHES} == {"MPYC_WEBRTC_SCTP_RECOVERY": "0",
                                                        "MPYC_WEBRTC_RECOVERY": "0"}
    assert e.native_env("webrtc:no-sctp-recovery")["MPYC_WEBRTC_SCTP_RECOVERY"] == "0"
    monkeypatch.setattr(e, "browser_switches", lambda variant: "window.x = 1;")
    assert "browser:no-recovery" in e.columns(["browser"], ["no-recovery"])


def test_report_gives_rounds_and_totals_apart_and_variants_side_by_side():
    from bench import evaluate as e

    data = _data(["loss3rtt10"], ["tcp", "webrtc", "webrtc:no-recovery"], seconds=2.0)
    data["cells"][("loss3rtt10", "rounds", "webrtc:no-recovery")].seconds = [30.0]
    report = e.markdown(data, "python -m bench.evaluate --condition loss3rtt10")
    assert "## 3% loss, 10 ms RTT" in report
    assert ("| workload (size) | TCP | WebRTC native | WebRTC native, no recovery |"
            in report)
    assert "`MPYC_WEBRTC_SCTP_RECOVERY=0` `MPYC_WEBRTC_RECOVERY=0`" in report
    rows = {line.split("|")[1].strip(): line for line in report.splitlines()
            if line.startswith("| ")}
    assert "30.000 s (30.00x)" in rows["rounds (1, m=3)"]
    # rounds + sort + inner + santa3 (m=3), then without rounds; santa5 has 5 parties.
    assert "**36.000 s** **(9.00x)**" in rows["**total (m=3 workloads)**"]
    assert "**6.000 s** **(2.00x)**" in rows["**total without rounds (m=3)**"]


def test_merge_replaces_only_the_conditions_run(tmp_path):
    """--merge: the loss sections of a new run go into an existing report (its JSON record,
    or the markdown of a report made before there was one); the rest stays."""
    from bench import evaluate as e

    old = _data(["plain", "rtt10", "loss1"], ["tcp", "webrtc", "browser"], seconds=1.5)
    old["scale"] = {"2 native": ([0.13], [0.0001])}
    old["repeats"] = {c: 3 for c in old["repeats"]}
    e.write_report(old, "python -m bench.evaluate", tmp_path)
    new = _data(["loss1", "loss3rtt10"], ["tcp", "webrtc", "webrtc:no-recovery"], seconds=9.0)
    for source in ("json", "markdown"):
        if source == "markdown":
            (tmp_path / "evaluation.json").unlink()
        merged = e.merge(e.load_report(tmp_path), new, "cmd --merge")
        assert [c.name for c in merged["conditions"]] == ["plain", "rtt10", "loss1",
                                                          "loss3rtt10"]
        assert merged["transports"] == ["tcp", "webrtc", "browser", "webrtc:no-recovery"]
        assert merged["cells"][("plain", "rounds", "webrtc")].seconds == [1.5]
        assert merged["cells"][("loss1", "rounds", "webrtc")].seconds == [9.0]
        assert ("loss1", "rounds", "browser") not in merged["cells"]  # not rerun: gone
        assert merged["scale"] == {"2 native": ([0.13], [0.0001])}
        report = e.markdown(merged, "cmd --merge")
        assert "Median of 1 run(s), by `cmd --merge`." in report
        section = report.split("## 3% loss, 10 ms RTT")[1].split("##")[0]
        assert "WebRTC native, no recovery" in section and "Chromium" not in section
        assert report.count("| 2 native | 1 | 0.13 s | 0.10 ms |") == 1
        e.write_report(merged, "cmd --merge", tmp_path / source)
        assert (tmp_path / source / "evaluation.png").read_bytes()[:4] == b"\x89PNG"


def test_committed_report_reads_back():
    """The committed docs/evaluation.md (no JSON beside it yet) is what --merge starts
    from: every section, cell and scale row must come back."""
    from bench import evaluate as e

    data = e.from_markdown((REPO / "docs" / "evaluation.md").read_text())
    names = [c.name for c in data["conditions"]]
    assert names[:4] == ["plain", "rtt10", "rtt50", "loss1"]
    assert len(data["scale"]) >= 5
    for c in names:
        assert (c, "rounds", "tcp") in data["cells"] and (c, "rounds", "webrtc") in data["cells"]


def test_loss_only_command_line():
    from bench import evaluate as e

    parser_args = ["--condition", "loss", "--variant", "no-recovery", "--merge"]
    seen = {}

    def fake(args):
        seen["args"] = args
        raise e.EvalError("stop here")

    import unittest.mock

    with unittest.mock.patch.object(e, "evaluate", fake):
        assert e.main(parser_args + ["--transport", "tcp"]) == 1
    args = seen["args"]
    assert args.conditions == list(e.LOSS_CONDITIONS)
    assert args.variants == ["no-recovery"]
    assert e.command_line(args) == ("python -m bench.evaluate --condition loss --transport tcp "
                                    "--variant no-recovery --merge")


def test_the_analysis_written_by_hand_survives_a_new_report(tmp_path):
    from bench import evaluate as e

    data = _data(["loss1"], ["tcp", "webrtc"], seconds=1.0)
    e.write_report(data, "first", tmp_path)
    report = tmp_path / "evaluation.md"
    analysis = f"{e.ANALYSIS_MARK}\n\n## What the loss conditions show\n\nTargets met.\n"
    report.write_text(report.read_text() + "\n" + analysis)
    e.write_report(data, "second", tmp_path)
    text = report.read_text()
    assert text.endswith(analysis) and text.count(e.ANALYSIS_MARK) == 1
    assert e.from_markdown(text)["cells"][("loss1", "rounds", "webrtc")].seconds == [1.0]
