"""pytest plugin for aiortc's own test suite, run by tests/test_aiortc_suite.py.

    python -m pytest -p aiortc_suite_plugin tests/test_rtcsctptransport.py ...
    (in aiortc's unpacked sdist, with this directory on PYTHONPATH)

It installs our patches before aiortc's tests run, as the peer's ``main`` does, and
makes aiortc's test modules construct the patched classes: they build their
``RTCSctpTransport`` and ``RTCDtlsTransport`` directly (over in-memory dummy ICE
transports), not through ``RTCPeerConnection``, so without this they would test aiortc
as released. It counts what the patched classes did and writes that, with
``install()``'s report, as JSON to the file named by ``MPYC_WEBRTC_SUITE_REPORT``.

``sctp_recovery`` changes on purpose what a few of aiortc's tests assert
(``test_aiortc_suite.DELIBERATE``):
when it is active they are expected to fail (strict xfail: should one pass, that is a
failure too, since the patch would then not do what it says).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

import pytest
from aiortc import rtcdtlstransport, rtcsctptransport
from test_aiortc_suite import DELIBERATE

from mpyc_webrtc.native import patches
from mpyc_webrtc.native.patches import sctp_fastpath, sctp_recovery, sctp_tuning

ACTIVE = patches.install()
COUNTS: Counter[str] = Counter()
ORIGINALS = {"RTCSctpTransport": rtcsctptransport.RTCSctpTransport,
             "RTCDtlsTransport": rtcdtlstransport.RTCDtlsTransport}


def _counted(slot: str, cls: type) -> type:
    """``cls``, counting its instances."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        COUNTS[f"created {slot}"] += 1
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": __name__})


def _count_calls(cls: type, name: str, key: str, *, when: Any = None) -> None:
    """Count calls of ``cls.name`` (those whose result passes ``when``, if given)."""
    original = getattr(cls, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when is None or when(result):
            COUNTS[key] += 1
        return result

    setattr(cls, name, counted)


PATCHED = {slot: _counted(slot, cls) for slot, cls in patches.installed().items()
           if slot in ORIGINALS}
if ACTIVE.get("sctp_fastpath"):
    _count_calls(sctp_fastpath.ShortPathSctpTransport, "_mw_send_now", "short path sends")
    _count_calls(sctp_fastpath.ShortPathSctpTransport, "_mw_scan", "short path packets",
                 when=lambda chunks: chunks is not None)
if ACTIVE.get("sctp_tuning"):
    _count_calls(sctp_tuning.DelayedSackSctpTransport, "_sack_may_wait", "delayed SACKs",
                 when=bool)
if ACTIVE.get("sctp_recovery"):
    _count_calls(sctp_recovery.LossRecoverySctpTransport, "_mw_send_probe", "probes")
    _count_calls(sctp_recovery.LossRecoverySctpTransport, "_mw_detect_losses",
                 "fast retransmits", when=bool)


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    if not ACTIVE.get("sctp_recovery"):
        return
    for item in items:
        reason = DELIBERATE.get(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
            COUNTS["deliberately different"] += 1


def pytest_collection_finish(session: Any) -> None:
    # aiortc's test modules (and their tests/utils.py) are imported by now.
    for name, module in list(sys.modules.items()):
        if name == "tests" or not name.startswith("tests."):
            continue
        for slot, patched in PATCHED.items():
            if getattr(module, slot, None) is ORIGINALS[slot]:
                setattr(module, slot, patched)
                COUNTS[f"replaced in {name}"] += 1


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("MPYC_WEBRTC_SUITE_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump({"active": ACTIVE, "counts": dict(COUNTS)}, out)
