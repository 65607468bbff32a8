"""The Python a browser party runs inside Pyodide, in a web worker (see ``web/worker.js``).

- ``channel``: the browser's RTCDataChannel (transferred to the worker) as a
  ``transport.MessageChannel``, and the ``ChannelFactory`` the mesh opens channels with.
- ``launch``: how a session's program becomes a file and a ``sys.argv`` (pure; the native
  peer needs the same).
- ``party``: one party's run: ``sys.argv``, ``import mpyc.runtime``, ``install_mesh`` with the
  browser's channels, then the program itself, exactly as ``mpyc-webrtc-peer`` does natively.

Nothing here imports ``mpyc`` at module level: MPyC reads ``sys.argv`` when first imported.
"""
