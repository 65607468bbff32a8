"""The two kinds of failure a native party reports to its person."""

from __future__ import annotations


class PeerError(Exception):
    """Something a person at this party must be told, in one sentence."""


class Failure(Exception):
    """Ends the command with a one-line message for the person who ran it."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
