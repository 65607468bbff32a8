"""The aiortc/aioice patches are all active on the locked versions, really in place
where aiortc and aioice create their objects, and step aside on any other version.

What the patched paths do is tested by tests/test_tuning.py (real connections, each
patch on and off) and tests/test_aiortc_suite.py (aiortc's own tests); this makes sure
nothing silently runs without them.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import aioice.ice
import aioice.turn
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcsctptransport import RTCSctpTransport

from mpyc_webrtc.native import patches
from mpyc_webrtc.native.patches import (
    dispatch_tuning,
    dtls_recovery,
    dtls_tuning,
    ice_tuning,
    sctp_fastpath,
    sctp_recovery,
    sctp_tuning,
    stun_demux,
)

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"

#: Per slot, the patch classes in the order install() composes them (outermost first).
EXPECTED_MRO = {
    "RTCSctpTransport": [sctp_recovery.LossRecoverySctpTransport,
                         sctp_tuning.DelayedSackSctpTransport,
                         sctp_fastpath.ShortPathSctpTransport,
                         dispatch_tuning.EagerFlushSctpTransport],
    "RTCDtlsTransport": [dtls_recovery.LastFlightDtlsTransport,
                         dtls_tuning.CheaperRecordsDtlsTransport,
                         dispatch_tuning.DirectDtlsTransport],
    "Connection": [ice_tuning.RelayGraceConnection, dispatch_tuning.DirectReceiveConnection],
    "StunProtocol": [stun_demux.DemuxStunProtocol],
}


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_the_lock_pins_the_versions_every_patch_is_written_for():
    pins = locked_versions()
    for patch in patches.PATCHES:
        assert patches.version_mismatch(patch.requires, lambda d: pins[d.lower()]) is None, \
            patch.name


def test_every_patch_is_active_on_the_installed_locked_versions():
    pins = locked_versions()
    for patch in patches.PATCHES:
        for distribution in patch.requires:
            assert importlib.metadata.version(distribution) == pins[distribution.lower()], \
                f"{distribution} is not the locked version: install through requirements.lock"
    # In a fresh interpreter with no switch set, as the peer's main installs them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPYC_WEBRTC_")}
    done = subprocess.run(
        [sys.executable, "-c", "import json; from mpyc_webrtc.native import patches; "
                               "print(json.dumps(patches.install()))"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {patch.name: True for patch in patches.PATCHES}
    assert done.stderr == ""  # no warning


def test_each_patch_class_is_where_aiortc_and_aioice_create_their_objects():
    active = patches.install()
    if not all(active.values()):
        pytest.fail(f"patches left off in this process: {active}", pytrace=False)
    composed = patches.installed()
    assert set(composed) == set(patches.SLOTS) == set(EXPECTED_MRO)
    for slot, expected in EXPECTED_MRO.items():
        module_name, name = patches.SLOTS[slot]
        cls = getattr(sys.modules[module_name], name)
        assert cls is composed[slot]
        assert [c for c in cls.__mro__ if c.__module__.startswith(patches.__name__)][1:] \
            == expected, slot
    assert hasattr(aioice.ice.server_reflexive_candidate, "bounds")  # ice_tuning's wrapper
    assert aioice.turn.UDP_SOCKET_BUFFER_SIZE == patches.UDP_BUFFER


async def test_a_peer_connection_is_made_of_the_patched_classes(monkeypatch):
    patches.install()
    composed = patches.installed()

    def no_sockets(*args, **kwargs):
        raise AssertionError("this test opens no socket")

    monkeypatch.setattr(asyncio.get_running_loop(), "create_datagram_endpoint", no_sockets)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("check")  # creates the SCTP, DTLS and ICE transports
        assert isinstance(pc.sctp, composed["RTCSctpTransport"])
        assert isinstance(pc.sctp.transport, composed["RTCDtlsTransport"])
        assert isinstance(pc.sctp.transport.transport.iceGatherer._connection,
                          composed["Connection"])
        # Its short path bundles SACKs with DATA.
        assert pc.sctp._mw_delays_sacks
    finally:
        await pc.close()


async def test_dtls_datagrams_skip_the_stun_parser(monkeypatch):
    patches.install()
    received = []
    receiver = SimpleNamespace(data_received=lambda data, component: received.append(data),
                               request_received=None)
    protocol = aioice.ice.StunProtocol(receiver)  # as aioice creates it
    protocol.local_candidate = SimpleNamespace(component=1)

    def parse_message(data):
        raise AssertionError("a DTLS record went to the STUN parser")

    monkeypatch.setattr(aioice.ice.stun, "parse_message", parse_message)
    record = bytes([23, 0xFE, 0xFD]) + bytes(20)  # DTLS application data
    protocol.datagram_received(record, ("127.0.0.2", 4000))
    assert received == [record]


def test_version_mismatch_reads_versions_as_patterns():
    versions = {"aiortc": "1.16.0", "pyee": "13.0.1", "aioice": "0.13.1"}.__getitem__
    assert patches.version_mismatch({"aiortc": "1.16.0", "pyee": "13.*"}, versions) is None
    assert patches.version_mismatch({"aiortc": "1.16.*", "aioice": "0.13.0"},
                                    versions) == "aioice 0.13.1"


@pytest.mark.parametrize("distribution, version, left_off", [
    ("aiortc", "1.17.0", {"sctp_recovery", "sctp_tuning", "dtls_recovery", "dtls_tuning",
                          "sctp_fastpath", "dispatch_tuning"}),
    ("aioice", "0.14.0", {"ice_tuning", "sctp_fastpath", "dispatch_tuning"}),
    ("pyee", "14.0.0", {"sctp_fastpath"}),
    ("pyOpenSSL", "27.0.0", {"dtls_recovery", "dtls_tuning"}),
])
def test_on_other_versions_a_patch_warns_and_steps_aside(distribution, version, left_off):
    # A fresh interpreter that sees another version of one distribution.
    code = f"""
import importlib.metadata, json, logging
real = importlib.metadata.version
importlib.metadata.version = lambda d: {version!r} if d == {distribution!r} else real(d)
logging.basicConfig(format="%(levelname)s %(message)s")
from aiortc import rtcdtlstransport, rtcpeerconnection, rtcsctptransport
from mpyc_webrtc.native import patches
active = patches.install()
untouched = {{slot: getattr(rtcpeerconnection, slot) is getattr(module, slot)
             for slot, module in (("RTCSctpTransport", rtcsctptransport),
                                  ("RTCDtlsTransport", rtcdtlstransport))}}
print(json.dumps({{"active": active, "slots": sorted(patches.installed()),
                  "untouched": untouched}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPYC_WEBRTC_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {name for name, on in result["active"].items() if not on} == left_off
    warnings = re.findall(r"WARNING aiortc patch (\w+) is written for .*, not (.*): left off",
                          done.stderr)
    assert {name for name, _ in warnings} == left_off
    assert all(f"{distribution} {version}" in found for _, found in warnings)
    if distribution == "aiortc":  # aiortc as released
        assert result["untouched"] == {"RTCSctpTransport": True, "RTCDtlsTransport": True}
        assert result["slots"] == ["Connection"]


def test_compose_builds_any_combination_without_installing_it():
    every = [patch.name for patch in patches.PATCHES]
    composed = patches.compose("RTCSctpTransport", every)
    assert [c for c in composed.__mro__ if c.__module__.startswith(patches.__name__)][1:] \
        == EXPECTED_MRO["RTCSctpTransport"]
    # In PATCHES order whatever the order asked in; a patch without a class for the slot
    # adds nothing; none at all gives aiortc's own class.
    pair = patches.compose("RTCSctpTransport", ["sctp_fastpath", "sctp_recovery",
                                                "ice_tuning"])
    assert pair.__mro__[1:3] == (sctp_recovery.LossRecoverySctpTransport,
                                 sctp_fastpath.ShortPathSctpTransport)
    assert patches.compose("RTCSctpTransport", ["ice_tuning"]) is RTCSctpTransport
    with pytest.raises(ValueError, match="no such patch: sctp_speedup"):
        patches.compose("RTCSctpTransport", ["sctp_speedup"])
