"""What the tests and benchmarks run on; not part of the installed product.

- ``netns``: throw-away network namespaces, the signaling server, native peers and the
  tampering proxy inside them, and the rule for tests that need root;
- ``chromium``: Debian Chromium inside such a namespace, driven by Playwright;
- ``browser``: a browser party on the pages (``BrowserParty``), driven by their
  data-testid hooks;
- ``sans_io``: a party's connection to the sans-I/O signaling core;
- ``tamper_proxy``: a man in the middle that changes what the server says
  (``python -m testbed.tamper_proxy``).

Imported from the repository root (pytest's ``pythonpath``; ``python -m bench.run``).
"""
