"""What the signaling server counts for its operator: ``GET /metrics``, Prometheus text.

No protocol rule lives here. The I/O layer counts what it writes (``Connection``), the
WebSockets it holds and how long a relayed ``signal`` took; the core only says what type
each client message had (``registry.Observer``), because only the core decodes them; the
rest is read from the registry when Prometheus scrapes (``RegistryCollector``).

No label carries a session id, a pid, an address, a name or anything a client chose:
labels are message types and error codes from the wire schema (``mpyc_webrtc.wire``) and
fixed states, so the series are few and the same on every server. A message type or code
that is not in the schema is counted as ``other``.

Each app has its own ``CollectorRegistry`` (not prometheus_client's global one), so apps
built side by side (the tests build many in one process) count separately.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mpyc_webrtc.wire import CLIENT_MESSAGES, SERVER_MESSAGES, ErrorCode

from .registry import Registry

#: ``Content-Type`` of ``GET /metrics`` (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Labels of ``mpyc_webrtc_messages_received_total`` besides the client message types.
RECEIVED_OTHER = ("invalid", "dropped")
#: Relay latency buckets, in seconds: a relay normally takes well under a millisecond;
#: the upper buckets show a recipient whose outbox backs up.
RELAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5)

_CLIENT_TYPES = frozenset(CLIENT_MESSAGES)
_SERVER_TYPES = frozenset(SERVER_MESSAGES) | {"error"}
_CODES = frozenset(code.value for code in ErrorCode)


class RegistryCollector(Collector):
    """Gauges read from the core at each scrape: sessions by state, parties, connections.

    Reading them then (rather than keeping counts up to date) cannot drift from the truth;
    a scrape walks the sessions once (at most ``max_sessions``, 1000 by default).
    """

    def __init__(self, registry: Registry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        sessions = list(self.registry.sessions.values())
        by_state = GaugeMetricFamily(
            "mpyc_webrtc_sessions", "Open sessions: in the lobby (not started yet) or "
            "started (a round ran or runs).", labels=["state"])
        started = sum(1 for s in sessions if s.started)
        by_state.add_metric(["lobby"], len(sessions) - started)
        by_state.add_metric(["started"], started)
        yield by_state
        yield GaugeMetricFamily(
            "mpyc_webrtc_parties", "Parties holding a place in an open session and still "
            "connected to this server.",
            value=sum(len(s.connected_members()) for s in sessions))
        connections = GaugeMetricFamily(
            "mpyc_webrtc_connections", "Signaling connections the core knows: joined to a "
            "session, or not yet.", labels=["state"])
        unjoined = len(self.registry.unjoined)
        connections.add_metric(["joined"], len(self.registry.endpoints) - unjoined)
        connections.add_metric(["unjoined"], unjoined)
        yield connections


class Metrics:
    """One app's metrics; also the core's ``registry.Observer``."""

    def __init__(self, registry: Registry):
        self.collectors = CollectorRegistry(auto_describe=True)
        self.received_total = Counter(
            "mpyc_webrtc_messages_received", "Messages clients sent over WebSockets, by type "
            "(invalid: not a valid message; dropped: over a rate or budget, not read).",
            ["type"], registry=self.collectors)
        self.sent_total = Counter(
            "mpyc_webrtc_messages_sent", "Messages written to clients' WebSockets, by type.",
            ["type"], registry=self.collectors)
        self.errors_total = Counter(
            "mpyc_webrtc_errors_sent", "Error answers (WebSocket messages and HTTP "
            "responses), by their JSON error code.", ["code"], registry=self.collectors)
        self.websockets = Gauge(
            "mpyc_webrtc_websockets_open", "WebSockets this server holds open (joined or not).",
            registry=self.collectors)
        self.relay_latency = Histogram(
            "mpyc_webrtc_relay_latency_seconds", "From a signal's arrival to its being "
            "written to the recipient's WebSocket (its wait in the recipient's outbox included).",
            buckets=RELAY_BUCKETS, registry=self.collectors)
        self.redis_latency = Histogram(
            "mpyc_webrtc_redis_round_trip_seconds", "Round trips to Redis (servers that share "
            "their sessions, --redis), by kind: create, read, append (a batch of entries), "
            "delete, heartbeat, renew.", ["kind"], buckets=RELAY_BUCKETS,
            registry=self.collectors)
        # Every series exists from the start at 0, so rates and alerts see it before the
        # first event.
        for type_ in (*sorted(_CLIENT_TYPES), *RECEIVED_OTHER):
            self.received_total.labels(type_)
        for type_ in sorted(_SERVER_TYPES):
            self.sent_total.labels(type_)
        for code in sorted(_CODES):
            self.errors_total.labels(code)
        self.collectors.register(RegistryCollector(registry))
        #: When the frame the core handles right now arrived (``loop.time()``), else None.
        #: The core handles one frame at a time and relays synchronously, so a ``signal``
        #: queued meanwhile came in that frame.
        self.frame_arrived: float | None = None

    # -- registry.Observer ------------------------------------------------------------------

    def received(self, type_: str) -> None:
        known = type_ in _CLIENT_TYPES or type_ in RECEIVED_OTHER
        self.received_total.labels(type_ if known else "other").inc()

    # -- the I/O edge ----------------------------------------------------------------------

    def written(self, type_: str, code: str | None, since: float | None,
                now: float | None = None) -> None:
        """A message was written to a client's WebSocket."""
        self.sent_total.labels(type_ if type_ in _SERVER_TYPES else "other").inc()
        if type_ == "error":
            self.error(code)
        if since is not None:
            now = asyncio.get_running_loop().time() if now is None else now
            self.relay_latency.observe(max(0.0, now - since))

    def redis(self, kind: str, seconds: float) -> None:
        """A round trip to Redis of ``kind`` took ``seconds``."""
        self.redis_latency.labels(kind).observe(seconds)

    def error(self, code: str | None) -> None:
        """An error answer with JSON ``code`` went out (WebSocket or HTTP)."""
        self.errors_total.labels(code if code in _CODES else "other").inc()

    def render(self) -> bytes:
        """Everything, in the Prometheus text format."""
        return generate_latest(self.collectors)
