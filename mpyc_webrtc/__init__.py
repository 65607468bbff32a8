"""MPyC over WebRTC data channels.

The core modules (``wire``, ``session``, ``transport``, ``mesh``, ``programs``)
are pure Python and import under Pyodide; ``native`` and ``peer`` bring in aiortc
and aiohttp for the headless peer.
"""

__version__ = "0.1.0"
