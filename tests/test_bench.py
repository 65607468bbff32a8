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
