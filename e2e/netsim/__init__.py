"""A simulated internet from network namespaces: NAT routers, coturn, a lossy wire.

For end-to-end tests and for developers who want to see WebRTC cross NATs without
an internet. Root only. See docs/netsim.md.

    from e2e.netsim import Internet
    with Internet(nats=["cone", "symmetric"]) as net:
        net.popen(net.parties[0].ns, [...])
"""

from .internet import (
    NAT_TYPES,
    SERVER_IP,
    TURN_IP,
    TURN_PORT,
    Internet,
    Party,
    rest_credentials,
)
from .processes import NetsimError, pids_in_namespaces
from .wireguard import Mesh

__all__ = ["NAT_TYPES", "SERVER_IP", "TURN_IP", "TURN_PORT", "Internet", "Mesh", "NetsimError",
           "Party", "pids_in_namespaces", "rest_credentials"]
