"""The Python a browser party runs inside Pyodide, in a web worker (see ``web/worker.js``).

- ``ring``: the inbox the page writes into (a SharedArrayBuffer): its layout and reader;
  ``inbox`` hands its records to the channels and the run; ``loop``: asyncio's event loop,
  sleeping in ``Atomics.wait`` on the inbox, so ``mpc.run`` blocks as natively.
- ``channel``: the page's RTCDataChannel, relayed through the inbox, as a
  ``transport.MessageChannel``, and the ``ChannelFactory`` the mesh opens channels with.
- ``party``: one party's run: ``sys.argv``, ``import mpyc.runtime``, ``install_mesh`` with the
  browser's channels, then the program itself, exactly as ``mpyc-webrtc-peer`` does natively (both
  use ``mpyc_webrtc.launch``).

Nothing here imports ``mpyc`` at module level: MPyC reads ``sys.argv`` when first imported.
"""
