import sys

# mpyc parses sys.argv when imported; keep pytest's own options away from it.
_argv, sys.argv = sys.argv, [sys.argv[0], "--no-log"]
try:
    import mpyc.runtime  # noqa: F401
finally:
    sys.argv = _argv
