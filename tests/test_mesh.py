"""The mesh seam: MPyC's own start-up handshake over in-memory channels, no network."""

import asyncio

import mpyc
import pytest
from mpyc.runtime import Party, Runtime

from mpyc_webrtc.memory import MemoryHub
from mpyc_webrtc.mesh import Mesh, MeshError, install_mesh, prepare_next_run
from mpyc_webrtc.transport import PeerSilent


def runtimes(m):
    options = mpyc._get_arg_parser().parse_args(["--no-log"])
    options.threshold = (m - 1) // 2
    return [Runtime(pid, [Party(i) for i in range(m)], options) for pid in range(m)]


@pytest.mark.parametrize("m", [2, 3, 5])
async def test_start_runs_mpycs_handshake_over_the_channels(m):
    rts = runtimes(m)
    hub = MemoryHub(asyncio.get_running_loop(), m)
    meshes = [install_mesh(rt, hub.factory(rt.pid)) for rt in rts]
    await asyncio.wait_for(asyncio.gather(*(rt.start() for rt in rts)), 5)
    for rt in rts:
        assert all(p.protocol is not None for p in rt.parties if p.pid != rt.pid)
        assert rt.parties[rt.pid].protocol.done()
        assert rt.start_time is not None
    # PRSS keys: every party in a subset holds the key its lowest member generated.
    for rt in rts:
        for subset, key in rt._prss_keys.items():
            assert rts[subset[0]]._prss_keys[subset] == key
    assert all(len(mesh.transports) == m - 1 for mesh in meshes)


def test_unchanged_mpc_run_start_style():
    """`mpc.run(mpc.start())` from synchronous code, as unmodified scripts do."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        rts = runtimes(3)
        hub = MemoryHub(loop, 3)
        for rt in rts:
            install_mesh(rt, hub.factory(rt.pid))
        rts[0].run(asyncio.gather(*(rt.start() for rt in rts)))
        assert all(rt.parties[rt.pid].protocol.done() for rt in rts)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_missing_channel_is_a_clear_error():
    rts = runtimes(3)
    hub = MemoryHub(asyncio.get_running_loop(), 3)

    class Partial:
        async def open_channels(self, pid, parties, timeout):
            return {1: hub.channels[0, 1]}

        async def close(self):
            pass

    install_mesh(rts[0], Partial())
    with pytest.raises(MeshError, match=r"No channel to parties \[2\]"):
        await rts[0].start()


async def test_losing_a_party_before_shutdown_is_reported():
    rts = runtimes(3)
    hub = MemoryHub(asyncio.get_running_loop(), 3)
    failures = []
    meshes = [install_mesh(rt, hub.factory(rt.pid), on_failure=failures.append) for rt in rts]
    await asyncio.wait_for(asyncio.gather(*(rt.start() for rt in rts)), 5)
    hub.channels[2, 0].close()  # party 2 vanishes towards party 0
    for _ in range(5):
        await asyncio.sleep(0)
    assert meshes[0].failure is not None
    assert "Party 3 disconnected" in str(meshes[0].failure)
    assert failures and failures[0] is meshes[0].failure


async def _close_like_shutdown(rts, meshes):
    """What ``Mesh.shutdown`` does, but for ``Runtime.shutdown``'s barrier (which needs
    the global runtime): each party closes its links to the higher pids, then waits until
    all links are gone."""
    for mesh in meshes:
        mesh.closing = True
    for rt in rts:
        rt.parties[rt.pid].protocol = asyncio.get_running_loop().create_future()
    for rt in rts:
        for peer in rt.parties[rt.pid + 1:]:
            peer.protocol.close_connection()
    await asyncio.wait_for(asyncio.gather(*(rt.parties[rt.pid].protocol for rt in rts)), 5)


async def test_running_again_over_kept_channels():
    """A second run over the same channels: fresh PRSS keys, a new handshake, and the
    channels stay open in between."""
    m = 3
    rts = runtimes(m)
    hub = MemoryHub(asyncio.get_running_loop(), m)
    keys_per_run = []
    for run in range(2):
        if run:
            for rt in rts:
                prepare_next_run(rt)
                assert rt._program_counter == [0, 0]
        meshes = [install_mesh(rt, hub.factory(rt.pid), keep_channels=True) for rt in rts]
        await asyncio.wait_for(asyncio.gather(*(rt.start() for rt in rts)), 5)
        for rt in rts:
            for subset, key in rt._prss_keys.items():
                assert rts[subset[0]]._prss_keys[subset] == key
        keys_per_run.append(dict(rts[0]._prss_keys))
        await _close_like_shutdown(rts, meshes)
        assert all(mesh.failure is None for mesh in meshes)
        assert all(mesh.traffic()["messages"] > 0 for mesh in meshes)
        assert not any(channel.closed for channel in hub.channels.values())
    assert keys_per_run[0].keys() == keys_per_run[1].keys()
    assert all(keys_per_run[0][s] != keys_per_run[1][s] for s in keys_per_run[0])


async def test_without_keep_channels_closing_closes_the_channels():
    rts = runtimes(2)
    hub = MemoryHub(asyncio.get_running_loop(), 2)
    meshes = [install_mesh(rt, hub.factory(rt.pid)) for rt in rts]
    await asyncio.wait_for(asyncio.gather(*(rt.start() for rt in rts)), 5)
    await _close_like_shutdown(rts, meshes)
    assert all(channel.closed for channel in hub.channels.values())


def test_failures_name_the_party_as_the_roster_does():
    errors = []
    mesh = Mesh(runtimes(3)[0], None, on_failure=errors.append)
    mesh.set_names([{"pid": 0, "name": "party 0", "label": ""},
                    {"pid": 1, "name": "Bob", "label": "hospital B"},
                    {"pid": 2, "name": "Carol", "label": ""}])
    # People count parties from 1: pid 1 is "Party 2".
    assert [mesh.name(p) for p in range(3)] == ["Party 1", "Party 2 (Bob, hospital B)",
                                               "Party 3 (Carol)"]
    mesh._link_failed(1, PeerSilent(7.0))
    assert str(errors[0]) == (
        "Party 2 (Bob, hospital B) stopped responding: nothing arrived from it for 7 s. It "
        "may have lost its network, closed its page or crashed; the computation cannot go "
        "on without it.")
    assert mesh.failure is errors[0]
    mesh._link_failed(2, ValueError("boom"))  # only the first failure counts
    assert len(errors) == 1


def test_a_failure_without_a_message_still_says_something():
    errors = []
    mesh = Mesh(runtimes(3)[0], None, on_failure=errors.append)
    mesh._link_failed(1, ConnectionError())
    assert str(errors[0]) == "The link to party 2 broke: unexpected ConnectionError"


async def test_a_party_going_silent_is_named_by_everyone_not_just_who_noticed_first():
    """Party 2 goes silent. Party 0 notices first and stops, which closes its links; party 1
    must still blame party 2 (told by party 0's abort message), not party 0."""
    rts = runtimes(3)
    loop = asyncio.get_running_loop()
    hub = MemoryHub(loop, 3)
    failures: dict[int, list[MeshError]] = {0: [], 1: [], 2: []}
    meshes = [install_mesh(rt, hub.factory(rt.pid), on_failure=failures[rt.pid].append,
                           keepalive=0.02, silence_limit=5.0) for rt in rts]
    await asyncio.wait_for(asyncio.gather(*(rt.start() for rt in rts)), 5)
    for i in (0, 1):  # party 2 goes silent: nothing it sends arrives
        hub.channels[2, i].remote = None
    meshes[0].names[2] = "Carol"
    meshes[0]._link_failed(2, PeerSilent(5.0))  # as party 0's transport would, first
    await meshes[0].factory.close()  # and party 0 stops, closing its links
    for _ in range(20):
        await asyncio.sleep(0.01)
    expected = ("Party 3 (Carol) stopped responding: nothing arrived from it for 5 s. It may "
                "have lost its network, closed its page or crashed; the computation cannot "
                "go on without it.")
    assert [str(e) for e in failures[0]] == [expected]
    assert [str(e) for e in failures[1]] == [expected]
