"""STUN/TURN configuration: REST credentials per party, relay-only sessions, the server's
options and config file. (That coturn really accepts the credentials is shown by the
simulated-internet scenarios in e2e/test_internet.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mpyc_webrtc.ice import url_transport
from mpyc_webrtc.wire import ErrorCode, SignalingError
from signaling.cli import parse_args
from signaling.ice_servers import IceConfig, names_stun, own_stun_url, turn_credentials
from signaling.registry import Registry
from testbed.sans_io import TOKEN_HASH, Clock, Party

TURN = ("turn:100.64.0.2:3478?transport=udp", "turn:100.64.0.2:3478?transport=tcp")
STUN = ("stun:100.64.0.2:3478",)


def test_credentials_are_coturns_rest_scheme():
    username, password = turn_credentials("s3cret", "abc.1", 1_900_000_000)
    assert username == "1900000000:abc.1"
    # RFC-draft "REST API for access to TURN services" / coturn use-auth-secret:
    expected = hmac.new(b"s3cret", b"1900000000:abc.1", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_each_party_gets_its_own_credentials_valid_for_the_ttl():
    ice = IceConfig(stun=STUN, turn=TURN, turn_secret="s3cret", turn_ttl=600)
    one, two = ice.servers("sid.1", 1000.0), ice.servers("sid.2", 1000.0)
    assert one[0] == {"urls": list(STUN)}
    assert one[1]["urls"] == list(TURN)
    assert one[1]["username"] == "1600:sid.1"
    assert two[1]["username"] == "1600:sid.2"
    assert one[1]["credential"] != two[1]["credential"]
    assert ice.has_relay


@pytest.mark.parametrize("kwargs, says", [
    ({"turn": TURN}, "need the relay's shared secret (--turn-secret)"),
    ({"turn": ("turn:u:p@h:3478",), "turn_secret": "x"}, "credentials come from --turn-secret"),
    ({"stun": ("turn:h:3478",)}, "is not a stun or stuns URL"),
    ({"turn": ("turn:h:3478?transport=sctp",), "turn_secret": "x"},
     "transport must be udp or tcp"),
    ({"turn_secret": ""}, "must not be empty"),
    ({"turn": TURN, "turn_secret": "x", "turn_ttl": 0}, "lifetime must be positive"),
])
def test_bad_configuration_is_explained(kwargs, says):
    with pytest.raises(ValueError, match=".*") as info:
        IceConfig(**kwargs)
    assert says in str(info.value)


def test_url_transport():
    assert [url_transport(u) for u in TURN] == ["udp", "tcp"]
    assert url_transport("turn:h:3478") == "udp"
    assert url_transport("turns:h:5349") == "tcp"


def test_welcome_carries_fresh_credentials_and_relay_only():
    clock = Clock()
    ice = IceConfig(stun=STUN, turn=TURN, turn_secret="s3cret", turn_ttl=3600)
    registry = Registry(clock=clock, ice=ice, wall_clock=lambda: 5000.0)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH,
                               "relay_only": True})
    assert session.describe()["relay_only"] is True
    a, b = Party(registry), Party(registry)
    a.join(session)
    b.join(session)
    welcome_a, welcome_b = a.sent[0], b.sent[0]
    assert welcome_a["relay_only"] is welcome_b["relay_only"] is True
    turn_a, turn_b = welcome_a["ice_servers"][1], welcome_b["ice_servers"][1]
    assert turn_a["username"] == f"8600:{session.id}.0"
    assert turn_b["username"] == f"8600:{session.id}.1"
    assert (turn_a["username"], turn_a["credential"]) == turn_credentials(
        "s3cret", f"{session.id}.0", 8600)


class WallClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_turn_credentials_expire_with_the_session():
    """A party's credentials end when its session closes at the latest (created + max_age),
    however late it joined; a party that joins an old session gets only what is left."""
    clock, wall = Clock(), WallClock(1_800_000_000.0)
    ice = IceConfig(turn=TURN, turn_secret="s3cret")  # turn_ttl: a day by default
    registry = Registry(clock=clock, ice=ice, wall_clock=wall, max_age=3600, idle_timeout=600)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
    end = 1_800_000_000 + 3600
    a, b, c = Party(registry), Party(registry), Party(registry)
    a.join(session)
    clock.now += 3000
    wall.now += 3000
    b.join(session)
    c.join(session)
    assert session.started
    for party, pid in ((a, 0), (b, 1), (c, 2)):
        (turn,) = party.take()[0]["ice_servers"]
        assert turn["username"] == f"{end}:{session.id}.{pid}"
        assert turn["credential"] == turn_credentials("s3cret", f"{session.id}.{pid}", end)[1]
    # The session indeed ends then (it runs: only its age closes it).
    clock.now += 599
    assert registry.expire() == []
    clock.now += 2
    assert registry.expire() == [session]


def test_turn_ttl_still_caps_the_credentials():
    wall = WallClock(1_800_000_000.0)
    ice = IceConfig(turn=TURN, turn_secret="s3cret", turn_ttl=600)
    registry = Registry(clock=Clock(), ice=ice, wall_clock=wall, max_age=8 * 3600)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
    a = Party(registry)
    a.join(session)
    assert a.take()[0]["ice_servers"][0]["username"] == f"{1_800_000_600}:{session.id}.0"


def test_relay_only_needs_a_relay():
    registry = Registry(clock=Clock(), ice=IceConfig(stun=STUN))
    with pytest.raises(SignalingError) as info:
        registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH,
                         "relay_only": True})
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert "This server has no TURN relay" in info.value.message
    with pytest.raises(SignalingError) as info:
        registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH,
                         "relay_only": "yes"})
    assert "'relay_only' must be true or false" in info.value.message


def test_static_turn_server_counts_as_a_relay():
    ice = IceConfig(static=({"urls": "turn:h:3478", "username": "u", "credential": "p"},))
    assert ice.has_relay
    assert ice.servers("x.0", 0) == [{"urls": "turn:h:3478", "username": "u",
                                     "credential": "p"}]


def test_server_options_from_a_config_file(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('turn_secret = "from-file"\nturn = ["turn:h:3478"]\nport = 9000\n')
    args = parse_args(["--config", str(config), "--port", "9100"])
    assert args.turn_secret == "from-file"
    assert args.turn == ["turn:h:3478"]
    assert args.port == 9100  # the command line wins


@pytest.mark.parametrize("text, says", [
    ("colour = 1\n", "unknown option 'colour'"),
    ("port = \"eighty\"\n", "port has the wrong type"),
    ("turn = \"turn:h:1\"\n", "turn has the wrong type"),
    ("port = [\n", "is not valid TOML"),
])
def test_bad_config_file_is_explained(tmp_path, capsys, text, says):
    config = tmp_path / "server.toml"
    config.write_text(text)
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])
    assert says in capsys.readouterr().err


def test_missing_config_file_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "nope.toml")])
    assert "cannot read the config file" in capsys.readouterr().err


# --- the server's own STUN service: what it hands out ---------------------------------------

def test_own_stun_url_is_the_public_hosts_else_the_listen_hosts():
    assert own_stun_url("https://mpc.example.org/", "0.0.0.0", 3478) == \
        "stun:mpc.example.org:3478"
    assert own_stun_url("http://[2001:db8::1]:8080", "::", 3478) == "stun:[2001:db8::1]:3478"
    assert own_stun_url(None, "100.64.0.1", 3479) == "stun:100.64.0.1:3479"
    assert own_stun_url(None, "::1", 3478) == "stun:[::1]:3478"
    # Every address: the server cannot know which one parties reach.
    for host in ("0.0.0.0", "::", "", None):
        assert own_stun_url(None, host, 3478) is None


def test_another_stun_server_is_named_by_stun_or_ice_server():
    assert not names_stun((), ())
    assert names_stun(("stun:h:3478",), ())
    assert names_stun((), ({"urls": ["turn:h:3478", "stun:h:3478"]},))
    assert not names_stun((), ({"urls": "turn:h:3478", "username": "u", "credential": "p"},))


@pytest.fixture
def started(monkeypatch):
    """``cli.main`` up to ``serve``: the app it would serve, and the UDP sockets it bound
    (on 127.0.0.1 only, closed after the test); nothing is sent anywhere."""

    import signaling.cli as cli

    bound: list = []
    apps: list = []

    def bind_udp(host, port):
        bound.extend(cli_bind(host, port))
        return bound

    cli_bind = cli.bind_udp
    monkeypatch.setattr(cli, "bind_udp", bind_udp)
    async def serve(app, *args, **kwargs):  # what it would serve, not serving it
        apps.append(app)

    monkeypatch.setattr(cli, "serve", serve)

    def start(*argv: str):
        for sock in bound:
            sock.close()
        bound.clear()
        apps.clear()
        cli.main(list(argv))
        return apps[0], list(bound)

    yield start
    for sock in bound:
        sock.close()


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_server_hands_out_its_own_stun_unless_another_is_named(started):
    from signaling.app import REGISTRY

    port = free_udp_port()
    app, bound = started("--stun-port", str(port))
    assert app[REGISTRY].ice.stun == (f"stun:127.0.0.1:{port}",)
    assert [s.getsockname() for s in bound] == [("127.0.0.1", port)]
    app, _ = started("--stun-port", str(port), "--public-url", "https://mpc.example.org")
    assert app[REGISTRY].ice.stun == (f"stun:mpc.example.org:{port}",)
    # A TURN relay alone does not stop it (aiortc gathers no srflx from TURN).
    app, _ = started("--stun-port", str(port), "--turn", TURN[0], "--turn-secret", "s")
    assert app[REGISTRY].ice.stun == (f"stun:127.0.0.1:{port}",)
    # Another STUN server named: that one only, and no port held by default ...
    app, bound = started("--stun", STUN[0])
    assert app[REGISTRY].ice.stun == STUN and bound == []
    app, bound = started("--ice-server", STUN[0])
    assert app[REGISTRY].ice.stun == () and bound == []
    # ... unless asked for; 0 turns it off.
    app, bound = started("--stun", STUN[0], "--stun-port", str(port))
    assert app[REGISTRY].ice.stun == STUN and len(bound) == 1
    app, bound = started("--stun-port", "0")
    assert app[REGISTRY].ice.stun == () and bound == []


def test_a_taken_stun_port_is_a_start_up_error_for_a_person(capsys):
    import socket

    from signaling.cli import main

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["--port", "0", "--stun-port", str(port)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mpyc-webrtc-server: error: UDP port {port} on 127.0.0.1 is taken "
                          "by another program"), err
    assert "--stun-port 0" in err and "--stun stun:HOST:PORT" in err
    with pytest.raises(SystemExit) as info:
        main(["--stun-port", "70000"])
    assert info.value.code == 2
    assert "a UDP port is 1 to 65535" in capsys.readouterr().err


def test_a_native_peer_leaves_out_ice_servers_aiortc_cannot_use():
    """A server listening on an IPv6 address hands out stun:[ADDRESS]:PORT, which browsers
    take and aiortc cannot parse (its peer connection would not even be created)."""
    from mpyc_webrtc.native.ice import plan_ice_servers, udp_probe_target

    servers = [{"urls": ["stun:[2001:db8::1]:3478", "stun:192.0.2.1:3478"]},
               {"urls": "turn:[2001:db8::1]:3478", "username": "u", "credential": "p"}]
    assert plan_ice_servers(servers, udp_ok=True) == [{"urls": "stun:192.0.2.1:3478"}]
    assert udp_probe_target(servers) == ("192.0.2.1", 3478)
    assert udp_probe_target([{"urls": "stun:[::1]:3478"}]) is None


def test_a_taken_http_port_is_a_start_up_error_for_a_person(capsys):
    import socket

    from signaling.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["--port", str(port), "--stun-port", "0"])
    assert info.value.code == 2
    assert (f"mpyc-webrtc-server: error: TCP port {port} on 127.0.0.1 is taken by another "
            "program. Choose another with --port PORT (or --host).") in capsys.readouterr().err


def test_the_stun_port_from_a_config_file(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text("stun_port = 0\n")
    assert parse_args(["--config", str(config)]).stun_port == 0
    assert not hasattr(parse_args([]), "stun_port")  # not given: decided by what else is
