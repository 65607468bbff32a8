"""The lobby's round view (web/round-view.js), run by node: sizes in units people read,
the status with the result's headline, and how far a running round has got."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mpyc_webrtc import sentences

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "js" / "round_view.mjs"


@pytest.fixture(scope="module")
def said() -> dict:
    node = shutil.which("node")
    assert node, "node is needed (./run.sh test installs it)"
    done = subprocess.run([node, str(SCRIPT)], capture_output=True, text=True, cwd=REPO,
                          input=json.dumps(sentences.document()))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sizes_are_in_units_people_read(said):
    # A no-break space joins the number and its unit; read here as a plain one.
    sizes = {n: text.replace("\u00a0", " ") for n, text in said["sizes"].items()}
    assert all(" " not in text for text in said["sizes"].values())
    assert sizes == {
        "0": "0 bytes", "1": "1 byte", "900": "900 bytes", "1024": "1.0 KiB",
        str(3873 * 1024): "3.8 MiB", str(12831 * 1024): "13 MiB",
        str(5 * 1024 ** 3): "5.0 GiB"}


def test_the_done_status_carries_the_headline(said):
    assert said["statuses"] == [
        "Done: the average salary is 53,333.33.", "Done: everyone voted yes.",
        "Done: sort = -1,0,7", "Done: Party 2 has the most: 9.",
        "Done: Alice gives a present to Bob.", "Done", "Done"]


def test_progress_shows_the_rate_then_measures_by_the_last_round(said):
    first, second, third, again, late = (
        {**shown, "text": shown["text"].replace("\u00a0", " ")} for shown in said["shown"])
    assert first == {"text": "Connecting: 0.2 s", "value": None}  # a moving bar
    assert second == {"text": "Computing: 0.5 s, 100 messages (2.0 KiB) exchanged.",
                      "value": None}
    assert third == {"text": "Computing: 1.5 s, 400 messages (13 MiB) exchanged, "
                             "300 a second now.", "value": None}
    assert again == {"text": "Computing: 0.5 s, 400 messages (600 bytes) exchanged. About 40% "
                             "done, judged by the last round (1,000 messages).", "value": 40}
    # A round that needs more than the last one never says it is finished before it is.
    assert late["value"] == 99
    assert late["text"].endswith("About 99% done, judged by the last round (1,000 messages).")
