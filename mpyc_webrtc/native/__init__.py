"""The native party: ``mpyc-webrtc-peer``, with aiortc for WebRTC and aiohttp for signaling.

Nothing here runs in a browser (the page has its own twins in ``web/``). The protocol
rules it follows are ``mpyc_webrtc``'s; this package is their I/O: the command line
(``cli``), the terminal display (``console``), the WebSocket (``signaling``), the peer
connections (``links``), the choice of ICE servers (``ice``) and the speed patches for
aiortc (``patches``, installed only by ``patches.install()``).
"""
