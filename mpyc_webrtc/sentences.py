"""What a party tells its person, in one place for both kinds of party.

The native peer (Python) and the page (JavaScript) say the same things about a join link,
about tampering, about who is where in the lobby, about a party that left and about a
browser that cannot take part. Written
twice, the sentences drifted apart, so they live here only: Python formats them with
``say``, and the server hands the same table to the page (``GET /api/sentences``), whose
``web/sentences.js`` fills in the fields in the same way. The tests compare whole
sentences from both.

A sentence is a template with ``{name}`` fields and nothing else (no format specs, no
escaped braces), so the two sides cannot fill it in differently. Wording that only one
kind of party has (the page's buttons, the terminal's progress line) stays with it.
"""

from __future__ import annotations

import re
from typing import Any

_TAMPER = "Tampering detected:"
_STOP = "Stop, and do not take part in this session."
_WHO = "Someone between you and {who} (the signaling server or the network)"
_TERMINAL = ("take part from a terminal: mpyc-webrtc-peer join 'LINK', where LINK is the "
             "whole link under \"Invite the others\".")
_HOLDS = ("Close this page first: while it is open it holds your place, and the other "
          "parties see why you cannot take part.")
_ASK_AGAIN = ("Ask the person who created the session for the whole link, and copy all "
              "of it.")

SENTENCES: dict[str, str] = {
    # -- the join link's fragment (#k=...&p=...) ----------------------------------------
    "link.missing_secret": (
        f"The join link lacks its secret part (after the # sign). {_ASK_AGAIN}"),
    "link.damaged": (
        f"The join link's secret part (after the # sign) is damaged: {{detail}}. {_ASK_AGAIN}"),
    # The secret is there and well formed, but the server does not know it (bad_token).
    "link.wrong_secret": (
        "This link is wrong: its secret part (after the # sign) is not this session's. A "
        "character may have changed on the way, or the link is another session's. "
        + _ASK_AGAIN),
    "link.twice": "it has '{key}' twice",
    "link.no_secret": "its secret (k=...) is missing",
    "link.no_hash": "the program's hash (p=...) is missing",
    "link.bad_secret": "its secret (k=...) is not {bytes} bytes of base64url",
    "link.bad_hash": "the program's hash (p=...) is not 64 hexadecimal digits",
    # -- tampering: the party stops at once ---------------------------------------------
    "tamper.failed_authentication": (
        f"{_TAMPER} a signaling message said to come from {{who}} failed "
        f"authentication. {_WHO} changed it, or it was not sent by {{who}}. {_STOP}"),
    "tamper.replayed": (
        f"{_TAMPER} signaling message {{seq}} from {{who}} arrived again (replayed). "
        f"{_WHO} sent it twice. {_STOP}"),
    "tamper.out_of_order": (
        f"{_TAMPER} signaling message {{seq}} from {{who}} arrived out of order "
        f"(number {{seq}}, expected {{expected}}). {_WHO} held back, dropped or reordered "
        f"messages. {_STOP}"),
    "tamper.bad_content": (
        f"{_TAMPER} a sealed signaling message from {{who}} is not a valid offer, "
        "answer, ICE candidate or chat message ({detail}). Only someone with the join link "
        f"can seal messages, so {{who}} or someone else with the link sent it. {_STOP}"),
    "tamper.not_json": "it is not JSON",
    "tamper.not_object": "it is not a JSON object",
    "tamper.unknown_kind": "unknown kind {kind}",
    "tamper.missing_field": "its {kind} has no text field '{field}'",
    "tamper.peer_program": (
        f"{_TAMPER} {{who}} runs a different program than this party (fingerprint "
        "{theirs}; this party runs {ours}). The parties were given different programs. "
        f"{_STOP}"),
    "tamper.server_program": (
        f"{_TAMPER} the server gave this party a different program than the one the "
        "session's creator chose (fingerprint {ours}; the link says {link}). " + _STOP),
    "tamper.no_descriptor": (
        f"{_TAMPER} the server did not hand over the session's sealed description, or it "
        "does not open with this link's secret, so nothing the server says about the "
        "session can be checked. " + _STOP),
    "tamper.shape": (
        f"{_TAMPER} the server changed {{what}}: the session's creator chose {{chosen}}, the "
        "server says {said}. " + _STOP),
    "shape.parties": "the number of parties",
    "shape.relay_only": "whether all traffic goes through the relay",
    "shape.labels": "the names of the places",
    "shape.program": "the program",
    "shape.args": "the program's arguments",
    "shape.pins": "the keys places are kept for",
    "shape.session": "the session's id",
    "shape.descriptor": "the session's sealed description",
    "tamper.rejoin_changed": (
        f"{_TAMPER} when this party reconnected, the server described the session "
        "differently than before ({what} changed). " + _STOP),
    "tamper.same_peer": (
        f"{_TAMPER} {{who}} and {{other}} are the same party (they show the "
        "same DTLS certificate), so this session has fewer distinct parties than its "
        "creator chose. " + _STOP),
    "tamper.own_certificate": (
        f"{_TAMPER} {{who}} shows this party's own DTLS certificate: someone is "
        "passing this party's messages back to it. " + _STOP),
    "tamper.unprompted_start": (
        f"{_TAMPER} the server started round {{round}}, which this party did not agree to "
        "(it had not said it was ready). " + _STOP),
    "tamper.protocol": (
        f"{_TAMPER} the server describes the sealing differently from this page ({{what}} "
        "differs), which could give it the session's keys. " + _STOP),
    # -- identities (mpyc_webrtc.identity): who is at the other end ----------------------
    "tamper.bad_signature": (
        f"{_TAMPER} the {{kind}} from {{who}} is not signed by the identity key it names "
        "({identity}), so it may come from anyone who has the join link. " + _STOP),
    "tamper.other_identity": (
        f"{_TAMPER} {{who}} now signs with the key {{now}}, but earlier in this "
        "session it signed with {before}: someone else is passing itself off as {who}. "
        + _STOP),
    "tamper.pinned": (
        f"{_TAMPER} the place of {{place}} is kept for the key {{pinned}}, but the party in "
        "it signed with {identity}: someone else took the place. " + _STOP),
    "tamper.pinned_self": (
        f"{_TAMPER} the server put this party in the place of {{place}}, which the session's "
        "creator kept for another key ({pinned}; yours is {identity}). " + _STOP),
    "tamper.roster_identity": (
        f"{_TAMPER} the server shows {{who}} with the key {{said}}, but that party signed "
        "with {signed}. " + _STOP),
    "tamper.roster_name": (
        f"{_TAMPER} the server shows {{who}} as {{said}}, but that party signed the name "
        "{signed}. " + _STOP),
    # A place as people read it (``place``): parties are numbered from 1 for people,
    # from 0 (their pid) in code and logs.
    "place.labelled": "'{label}' (party {number})",
    "place.plain": "party {number}",
    "identity.verified": "{who}: {name}, {identity} (verified)",
    "identity.verified_unnamed": "{who}: {identity} (verified)",
    "identity.kind_chat": "chat message",
    "identity.yours": "You are {identity} (fingerprint {fingerprint}).",
    # -- known identities: whom this party computed with before ------------------------
    "known.new": "new key",
    "known.known": "you computed with this key before, as '{name}' ({when})",
    "known.renamed": "you computed with this key before, as '{before}', now '{name}'",
    "known.name_reused": (
        "Careful: you computed with someone called '{name}' before, with another key "
        "({fingerprint}). This is a new key."),
    # -- chat -------------------------------------------------------------------------
    "chat.empty": "Write a message first.",
    "chat.too_long": "A chat message can be at most {max} characters; this one has {length}.",
    "chat.not_yet": "You can chat once you have joined the session.",
    "chat.nobody": "Nobody else is in the session yet to read it.",
    "chat.from": "{who}: {text}",
    # -- the lobby: a party's state, a pair's connection (wire.LINK_STATES) ----------------
    "member.waiting": "not here yet",
    "member.joined": "in the lobby, choosing an input",
    "member.ready": "ready",
    "member.connecting": "connecting",
    "member.computing": "computing",
    "member.done": "finished",
    "member.again": "finished, wants to run again",
    "member.failed": "failed",
    "member.left": "left the session",
    "member.unsupported": "cannot take part: its browser lacks {lacks}",
    "member.reconnecting": "lost its connection to the server, reconnecting…",
    "pair.signaling": "exchanging connection details",
    "pair.connecting": "connecting",
    "pair.connected": "connected",
    "pair.ready": "ready",
    "pair.closed": "closed",
    "pair.failed": "could not connect",
    # -- privacy: how many parties must collude to learn an input (launch.privacy) ---------
    "privacy.full": (
        "Private unless {colluders} parties collude: nobody sees your input, not even the "
        "server, unless {colluders} of the {parties} parties work together."),
    "privacy.reduced": (
        "Less private than it could be: your input stays secret only unless {colluders} "
        "parties collude, where with {parties} parties it could take {best}."),
    "privacy.none": (
        "No privacy: with these settings MPyC keeps no input secret from the other parties "
        "(its threshold is 0, as with 2 parties or -T0). Every other party can learn what "
        "you enter."),
    # -- connecting to the other parties (said by Python on both kinds of party) -------------
    "connect.never_answered": (
        "Could not connect to {who} within {seconds} s: {they} never answered. A party may "
        "have closed its page, lost its network or stopped."),
    "connect.not_through_relay": (
        "Could not connect to {who} within {seconds} s, not even through the TURN relay. The "
        "relay may be unreachable from one of you, or refuse the credentials (its secret "
        "must match the server's --turn-secret)."),
    "connect.no_path": (
        "Could not connect to {who} within {seconds} s: no direct path between you was "
        "found. {hint}"),
    "connect.timeout": "Could not connect to {who} within {seconds} s. {hint}",
    "connect.failed": "Could not connect to {who}: {reason} {hint}",
    "connect.closed_early": "the connection closed before it was ready.",
    "connect.hint": (
        "A firewall or a strict (symmetric) NAT is in the way; the signaling server's "
        "operator can add a TURN relay (mpyc-webrtc-server --turn URL --turn-secret SECRET), "
        "which gets through."),
    # -- a browser that cannot take part (wire.CAPABILITIES), said before "I'm ready" ------
    "capability.webrtc": "WebRTC data channels",
    "capability.webassembly": "WebAssembly",
    "capability.workers": "Web Workers",
    "capability.isolation": "cross-origin isolation (SharedArrayBuffer)",
    "capability.unknown": "something the computation needs",
    "browser.unsupported": (
        "This browser cannot take part in the computation: it lacks {lacks} (an old "
        "version, a setting or an extension can be the cause). Open the same link in a "
        "current Chrome, Edge, Firefox or Safari, on this device or another one, or "
        f"{_TERMINAL} {_HOLDS}"),
    "browser.not_isolated": (
        "This page cannot take part in the computation: the server sent it without the "
        "headers that isolate it from other sites (Cross-Origin-Opener-Policy and "
        "Cross-Origin-Embedder-Policy), and the computation needs that isolation in every "
        "browser. Tell whoever runs the server (a proxy in front of it may drop these "
        f"headers). Meanwhile you can {_TERMINAL} {_HOLDS}"),
    # -- "How does this keep my input secret?": for someone new to all this (the lobby and
    # the create page, web/explainer.js) ---------------------------------------------------
    "explain.title": "How does this keep my input secret?",
    "explain.mpc": (
        "This is secure multiparty computation: your browser splits your input into random "
        "pieces, one for each party, and no piece on its own says anything about it. The "
        "parties compute with the pieces and put only the result together, so everyone "
        "learns the result and no one learns your input, unless enough of the others work "
        "together against you (the line above \"I'm ready\" says how many)."),
    "explain.server": (
        "The server only brings the parties together: it sees the session, who is in it, "
        "their names and when they are ready. It never sees your input or its pieces, which "
        "go straight from browser to browser over encrypted connections (through a relay, "
        "if one is needed, that cannot read them either). The link's secret part, after the "
        "# sign, never goes to the server; with it the browsers seal what they pass through "
        "the server, so the server cannot read or change it unnoticed."),
    "explain.fingerprint": (
        "The program's fingerprint (five groups of four characters, like 3f2a 9c41 ...) "
        "stands for the exact code every party runs. Your browser checks that the code it is "
        "about to run has the fingerprint your link names, and stops if not. Compare it with "
        "the others, by phone or in person: the same fingerprint means the same program."),
    "explain.keys": (
        "Each party also has a key with its own fingerprint (like ABCD-EFGH-IJKL-MNOP), "
        "shown next to its place once its connection is verified: compare it with the person "
        "to be sure who is in that place."),
    # -- the session ----------------------------------------------------------------------
    "party.left": "The computation cannot finish: {who} left the session.",
    "server.reported": "The server reported {code}.",
    # The server shuts down (error server_shutting_down): sessions live only in its memory.
    "server.shutting_down.lobby": (
        "The session server is shutting down, so this session ended before the computation "
        "started. Once the server is back, ask the person who created the session for a new "
        "link."),
    "server.shutting_down.started": (
        "The session server is shutting down. A computation that is running goes on directly "
        "between the parties, but this session cannot run again: start a new session to "
        "compute again."),
    # Losing the connection to the server in the lobby: the party reconnects and keeps its
    # place (join's ``resume``), or says why it could not.
    "reconnect.lost": "Lost the connection to the server; reconnecting (attempt {attempt})…",
    "reconnect.back": "Reconnected: still {who}.",
    # After the start: this party back on a new connection, and another party back.
    "reconnect.again_help": (
        "You have your place back. To compute again with the others, press \"Run again\" (if "
        "it shows) and then \"I'm ready to run again\": new connections are made when "
        "everyone agrees."),
    "reconnect.peer_back": (
        "{who} is back after a reload or a lost connection: the session can run again once "
        "everyone agrees, over new connections to it."),
    "reconnect.gave_up": (
        "The connection to the server was lost and could not be restored within {seconds} s, "
        "so this party gave up its place. If the session has not started yet, join again "
        "with the same link."),
    "rejoin.unknown_session": (
        "The connection to the server was lost and the session is gone: the server "
        "restarted. Ask the person who created the session for a new link."),
    "rejoin.place_taken": (
        "The connection to the server was lost for too long: your place in the session was "
        "given to someone else. Ask the person who created the session for a new link."),
    "rejoin.other_place": (
        "The connection to the server was lost, and on reconnecting the server gave this "
        "party another place ({got} instead of {who}), so it stops. Ask the "
        "person who created the session for a new link."),
    "rejoin.refused": (
        "The connection to the server was lost, and the server did not let this party back "
        "into the session: {reason}"),
}

_FIELD = re.compile(r"\{(\w+)\}")


def say(key: str, /, **fields: Any) -> str:
    """The sentence ``key`` with its ``{name}`` fields filled in (as ``web/sentences.js``
    does: every field named must be given)."""
    template = SENTENCES[key]

    def field(match: re.Match[str]) -> str:
        return str(fields[match.group(1)])

    return _FIELD.sub(field, template)


def place(pid: int | str | None, label: str = "") -> str:
    """Place ``pid`` as a person reads it: ``'Bob' (party 2)`` or ``party 2`` (people count
    parties from 1; ``web/sentences.js``'s ``place`` is the same rule). A ``pid`` that is no
    number (a tampered message's sender) is shown as it is."""
    label = " ".join(str(label or "").split())
    number = pid + 1 if isinstance(pid, int) and not isinstance(pid, bool) else pid
    return (say("place.labelled", label=label, number=number) if label
            else say("place.plain", number=number))


def document() -> dict[str, str]:
    """The table as JSON for the page."""
    return dict(SENTENCES)
