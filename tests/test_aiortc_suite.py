"""aiortc's own SCTP and DTLS tests, run with our patches installed.

The patches replace parts of aiortc's SCTP and DTLS transports; aiortc's test suite is
the best description of what those transports must still do. This runs
tests/test_rtcsctptransport.py and tests/test_rtcdtlstransport.py from the sdist of the
installed aiortc (downloaded once from PyPI with pip, checked against its SHA-256 and
kept in .venv/aiortc-sdist/) in a subprocess, with tests/aiortc_suite_plugin.py, which
installs the patches and makes aiortc's tests construct the patched classes. Every test
must pass, the patches must have been active, and the patched classes used; except the
few that assert what ``sctp_recovery`` changes on purpose (``DELIBERATE``): with it they
must fail, without it pass. It runs with every patch, with every patch but
``sctp_recovery``, and with ``sctp_recovery`` alone. Those tests use in-memory dummy ICE
transports, not aioice: where a patch relies on aioice it must step aside, and does.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mpyc_webrtc.native.patches import sctp_recovery

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".venv" / "aiortc-sdist"
#: The sdist this was written for (PyPI's SHA-256), and how many of its tests these are.
SDIST = {"1.16.0": "892a1d22ec500a41c6a2377a372db575929d9e9f614e9a2276b145cf40924798"}
TEST_FILES = ["tests/test_rtcsctptransport.py", "tests/test_rtcdtlstransport.py"]
EXPECTED_PASSED = {"1.16.0": 121}
#: What the tests may need from the sdist besides the two test files.
SUPPORT = re.compile(r"tests/(__init__\.py|utils\.py|[^/]+\.bin)")
#: Only so that a hang fails instead of blocking CI: the run takes ~30 s.
HANG_GUARD = 900


def aiortc_tests(version: str) -> Path:
    """The unpacked tests of aiortc's sdist ``version`` (downloaded on first use)."""
    root = CACHE / f"aiortc-{version}"
    if all((root / name).is_file() for name in [*TEST_FILES, "pytest.ini"]):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"aiortc-{version}.tar.gz"
    if not archive.is_file():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", str(CACHE), f"aiortc=={version}"],
            capture_output=True, text=True, timeout=HANG_GUARD)
        if done.returncode or not archive.is_file():
            pytest.fail(f"could not download aiortc {version}'s sdist from PyPI:\n"
                        f"{done.stderr[-2000:]}", pytrace=False)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST[version]:
        archive.unlink()
        pytest.fail(f"aiortc-{version}.tar.gz has SHA-256 {digest}, not PyPI's "
                    f"{SDIST[version]}", pytrace=False)
    prefix = f"aiortc-{version}/"
    with tarfile.open(archive) as tar:
        wanted = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)
                  and (m.name[len(prefix):] in TEST_FILES
                       or SUPPORT.fullmatch(m.name[len(prefix):]))]
        # (the "data" filter exists from Python 3.11.4 on; the members are checked above)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(CACHE, members=wanted, **safe)
    # Its own (empty) pytest configuration, rather than ours from the directories above.
    (root / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return root


_FIRST_GAP = ("RACK (RFC 8985) retransmits a chunk on the first gap report, where aiortc "
              "waits for three")
#: aiortc's tests that assert what ``sctp_recovery`` changes on purpose, and why.
DELIBERATE = {
    "test_send_data_with_gap": _FIRST_GAP,
    "test_send_data_with_gap_1_retransmit": _FIRST_GAP,
    "test_send_data_with_gap_2_retransmit": _FIRST_GAP,
    "test_send_data_with_gap_3_retransmit": _FIRST_GAP,
    "test_receive_sack_abandoned_queued_fragments":
        "a lost chunk of a partially reliable message is abandoned on the first gap report "
        "(RACK), so its FORWARD TSN goes out before the fragments the test expects first",
    "test_receive_sack_forward_tsn_lost":
        "abandoned on the first gap report (RACK), the chunk's FORWARD TSN is repeated with "
        "each of the test's two further gap reports, where aiortc sends it once",
    "test_reconfig_timer_expired":
        f"RTO.initial is {sctp_recovery.RTO_INITIAL:g} s (RFC 6298), not RFC 4960's 3 s",
}

#: Which patches each run switches off.
CONFIGURATIONS = {
    "all": set(),
    "all but sctp_recovery": {"sctp_recovery"},
    "sctp_recovery alone": {"sctp_tuning", "ice_tuning", "dtls_recovery", "dtls_tuning",
                            "sctp_fastpath", "dispatch_tuning"},
}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_aiortc_sctp_and_dtls_tests_pass_with_the_patches(tmp_path, configuration):
    off = CONFIGURATIONS[configuration]
    version = importlib.metadata.version("aiortc")
    if version not in SDIST:
        pytest.fail(f"aiortc {version} is not the version the patches are written for "
                    f"({', '.join(SDIST)}): install through requirements.lock",
                    pytrace=False)
    root = aiortc_tests(version)
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent),
           "MPYC_WEBRTC_SUITE_REPORT": str(report)}
    for name in list(env):
        if name.startswith("MPYC_WEBRTC_") and name != "MPYC_WEBRTC_SUITE_REPORT":
            del env[name]  # every patch on, but those switched off here
    env.update({f"MPYC_WEBRTC_{name.upper()}": "0" for name in off})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-p", "aiortc_suite_plugin", *TEST_FILES],
            cwd=root, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"aiortc's tests hang with the patches:\n{str(exc.stdout)[-3000:]}",
                    pytrace=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", summary)}
    deliberate = 0 if "sctp_recovery" in off else len(DELIBERATE)
    assert counts == {"passed": EXPECTED_PASSED[version] - deliberate,
                      **({"xfailed": deliberate} if deliberate else {})}, summary

    result = json.loads(report.read_text())
    assert {name for name, on in result["active"].items() if not on} == off
    used = result["counts"]
    # aiortc's test modules constructed the patched classes, and the patched paths ran.
    assert used["created RTCSctpTransport"] > 50
    if "dtls_tuning" not in off:
        assert used["created RTCDtlsTransport"] > 50
    if "sctp_fastpath" not in off:
        assert used["short path packets"] > 0 and used["short path sends"] > 0
    if "sctp_tuning" not in off:
        assert used["delayed SACKs"] > 0
    if "sctp_recovery" not in off:
        assert used["deliberately different"] == deliberate
        assert used["probes"] + used["fast retransmits"] > 0
