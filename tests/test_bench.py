"""The benchmark keeps working: a quick run completes with every result checked."""

import subprocess
import sys
from pathlib import Path

import pytest

from netns import available

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.netns
def test_quick_benchmark_runs_and_prints_the_ratio_table():
    if (why := available()) is not None:
        pytest.fail(f"the benchmark needs network namespaces, but {why}")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for workload in ("mul", "sort", "inner", "TOTAL"):
        assert rows[workload][-1].endswith("x"), done.stdout
    assert "open" in done.stdout and "after the last party joined" in done.stdout
