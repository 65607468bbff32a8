"""What a party tells its person, in one place for both kinds of party.

The native peer (Python) and the page (JavaScript) say the same things about a join link,
about tampering, about who is where in the lobby, about a party that left and about a
browser that cannot take part. Written
twice, the sentences drifted apart, so they live here only: Python formats them with
``say``, and the server hands the same table to the page (``GET /api/sentences``), whose
``web/sentences.js`` fills in the fields in the same way. The tests compare whole
sentences from both.

A sentence is a template with ``{name}`` fields and nothing else (no format specs, no
escaped braces), so the two sides cannot fill it in differently. Every word the pages show
is here too (their status lines, buttons, help texts and static HTML: the keys from
``title.*`` on), so a translation is another table and no code changes (web/README.md,
"Words and translations"); tests/test_sentence_catalogue.py holds the pages to it. The
terminal's own progress line stays with the native peer.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Translations of the table: ``LANG.json`` (``fr.json``, ``pt-br.json``), each a JSON
#: object of keys and sentences, any subset of the keys (the rest stay English).
TRANSLATIONS = Path(__file__).with_name("translations")
_LANGUAGE = re.compile(r"[a-z]{1,8}(-[a-z0-9]{1,8})*")

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
    # the page's reasons, which it hands to Python for connect.failed
    "connect.link_failed": "the connection failed.",
    "connect.setup_failed": "the connection could not be set up ({reason}).",
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
    # -- the pages (web/*.js, web/*.html): every other word a page shows ------------------
    # Composed text has a key per whole sentence; "KEY.one" / "KEY.other" are the forms for
    # a count of 1 and any other count (sentences.js's sayCount). The lobby's static text
    # (data-say="join.*" in web/join.html) and the create page's (create.*) are here too.
    "page.lang": "en",
    # what a page that stopped for good says it is (its status; web/ended-view.js)
    "title.no_session": "No session",
    "title.cannot_load": "Cannot load",
    "title.incomplete_link": "Incomplete link",
    "title.no_such_session": "No such session",
    "title.session_closed": "Session closed",
    "title.tampering": "Tampering detected",
    "title.cannot_run_here": "Cannot run here",
    "title.cannot_take_part": "Cannot take part here",
    "title.session_full": "Session full",
    "title.disconnected": "Disconnected",
    "title.wrong_link": "Wrong link",
    "title.could_not_join": "Could not join",
    "title.server_shutting_down": "Server shutting down",
    "title.failed": "Failed",
    "title.cannot_load_python": "Cannot load Python",
    # why, and the next step
    "join.no_session": (
        "This page needs a session link, which looks like http://HOST/join/SESSION_ID. Ask "
        "the person who created the session for it."),
    "join.needs_https": (
        "This page must be opened over https:// (or on this computer, as http://127.0.0.1): "
        "browsers allow the encryption it needs only there."),
    "identity.no_ed25519": (
        "This browser cannot take part: its WebCrypto lacks Ed25519 signatures, with which "
        "every party proves who it is and checks who the others are. A current Chrome, Edge, "
        "Firefox or Safari has them: update this browser, or open the link in another one, on "
        "this device or another, or take part with mpyc-webrtc-peer join 'LINK'."),
    "join.full": (
        "This session already has all {parties} parties, so nobody else can join it. Ask the "
        "person who created it for a new link."),
    "places.all_joined": (
        "All parties joined this session before you, so you cannot join it any more. Ask the "
        "person who created it for a new link."),
    "join.unreadable": "A signaling message could not be read: {message}.",
    "join.closed_before_join": (
        "The connection to the session server closed before you could join. Reload the page "
        "to try again."),
    "join.server_lost": "The connection to the session server was lost.",
    "join.lost_before_start": (
        "The connection to the session server was lost before the computation started. "
        "Reload the page to join again."),
    "join.could_not_start": "The page could not start: {reason}. Reload the page to try again.",
    "worker.stopped": "The Python worker stopped: {reason}.",
    "worker.not_started": "it could not be started in this browser",
    "worker.loading": "Loading Python: {step}… {percent}%",
    "worker.step.downloading": "downloading python",
    "worker.step.starting": "starting python",
    "worker.step.loading": "loading mpyc",
    "worker.step.preparing": "preparing mpyc",
    "worker.step.ready": "ready",
    "worker.failed.load": "Python could not be loaded in this browser: {reason}",
    "worker.failed.run": "The program could not be run: {reason}",
    "worker.failed.again": "The program could not be run again: {reason}",
    "worker.failed.other": "Something went wrong in the Python worker: {reason}",
    "ended.no_result": (
        "This round stopped before it finished, so there is no result. What went wrong is "
        "said above."),
    "ended.session_over": "This session is over: a new one gets a new link to send to everyone.",
    "ended.link_used_up": (
        "This link cannot be used any more: start a new session, or ask the person who sent "
        "it for a new link."),
    "ended.new_session": "To compute again, start a new session and send its link to everyone.",
    "ended.retry": "Or reload this page to try this link again.",
    # the lobby's status line
    "status.joining": "Joining the session…",
    "status.choose_place": "Choose your place",
    "status.waiting_unsupported": (
        "Waiting for {who} to take part from another browser (its own cannot)"),
    "status.waiting_join.one": "Waiting for {count} more party to join",
    "status.waiting_join.other": "Waiting for {count} more parties to join",
    "status.everyone_here": "Everyone is here: enter your input and press \"I'm ready\"",
    "status.waiting_ready.one": "Waiting for {count} party to press \"{button}\"",
    "status.waiting_ready.other": "Waiting for {count} parties to press \"{button}\"",
    "status.starting": "Everyone is ready: starting",
    "status.connecting": "Connecting to the other parties",
    "status.running_again": "Running again",
    "status.computing": "Computing",
    "status.run_again": "Run again?",
    "status.done": "Done",
    "status.done_headline": "Done: {headline}",
    # buttons whose words change
    "button.loading": "Loading Python…",
    "button.ready": "I'm ready",
    "button.ready_again": "I'm ready to run again",
    # running again, and a party back after a reload
    "again.help": (
        "Change your input if you like and press \"I'm ready to run again\". It runs again, "
        "over the same connections, once every party agrees."),
    "again.left": (
        "{who} has left, so this session cannot run again. Start a new session to compute "
        "again."),
    "again.server_closed": (
        "The connection to the session server closed, so this session cannot run again. Start "
        "a new session to compute again."),
    "again.wish.one": "{who} wants to run again: press Run again to join",
    "again.wish.other": "{who} want to run again: press Run again to join",
    "list.and": "{first} and {last}",
    "again.create_again": "Create it again with the same settings",
    "again.create_again_help": (
        "The same program and places, with a new link to send to the others."),
    "closes.idle": (
        "This session stays open while anyone is on this page; once everyone has left, it "
        "closes after {after}."),
    "closes.minutes": "{minutes} minutes",
    "closes.seconds": "{seconds} seconds",
    "closes.at": "It closes at {when} in any case.",
    "returned.result": (
        "Your result of round {round}, as this page showed it at {time}, before it was "
        "reloaded."),
    "returned.no_result": (
        "This page was reloaded before the computation finished, so it has no result to "
        "show. A reload during a computation ends it for every party."),
    "returned.help": (
        "You have your place back. To compute again with the others, enter your input and "
        "press \"I'm ready to run again\": new connections are made when everyone agrees."),
    "returned.none_here": "none of the others is still here",
    "returned.all_here": "all the others are still here ({names})",
    "returned.some_here": "{here}, {left} left",
    "returned.still_here.one": "{names} is still here",
    "returned.still_here.other": "{names} are still here",
    "returned.others_left.one": "{count} other has",
    "returned.others_left.other": "{count} others have",
    "returned.status": "Back in the session after a reload: {who}.",
    "returned.status_all": (
        "Back in the session after a reload: {who}. Press \"I'm ready to run again\" to "
        "compute again with them."),
    # a round: its progress, its result
    "round.connecting": "Connecting: {seconds} s",
    "round.computing": "Computing: {seconds} s",
    "round.traffic": ", {messages} messages ({size}) exchanged",
    "round.rate": ", {rate} a second now",
    "round.percent": ". About {percent}% done, judged by the last round ({messages} messages)",
    "round.progress": "{text}.",
    "round.finished_in": "Finished in {seconds} s{traffic}.",
    "round.stopped_after": "Stopped after {seconds} s{traffic}.",
    "size.bytes.one": "{count}\u00a0byte",
    "size.bytes.other": "{count}\u00a0bytes",
    "size.kib": "{value}\u00a0KiB",
    "size.mib": "{value}\u00a0MiB",
    "size.gib": "{value}\u00a0GiB",
    "size.tib": "{value}\u00a0TiB",
    "result.copied": "Copied.",
    "result.not_copied": "Could not copy: select the result and copy it yourself.",
    "result.history_round": "Round {round}: ",
    "result.private": "Only you see this result; each party got its own.",
    # the session: its program, the invite, the places
    "session.own_summary": (
        "A program written by the person who created this session. Read it below before you "
        "take part."),
    "session.builtin": "{title} (built-in program \"{name}\")",
    "session.builtin_args": "{title} (built-in program \"{name}\"), with arguments {args}",
    "session.uploaded": "{name}, an MPyC program uploaded by the session's creator",
    "session.uploaded_args": (
        "{name}, an MPyC program uploaded by the session's creator, with arguments {args}"),
    "session.from_link": "(from the link)",
    "session.checking": "(from the link; checking the code…)",
    "session.fingerprint_differs": "✗ the code here has fingerprint {fingerprint}",
    "session.fingerprint_matches": "✓ the code your browser will run matches the link",
    "invite.title": "Invite the others",
    "invite.title_full": "Invite link (every place is taken)",
    "invite.copied": "Copied. Paste it into a message to the others.",
    "invite.selected": "Selected: press Ctrl+C (or ⌘C) to copy it.",
    "place.default": "Party {number}",
    "places.taken": "Someone already took this place",
    "places.kept_other": "Kept for another person's key",
    "places.kept_you": "{place} (kept for you)",
    # the roster: who is here, whose key, each pair's connection
    "roster.party": "Party {number}",
    "roster.party_labelled": "{label} (party {number})",
    "roster.party_named": "{party} · {name}",
    "roster.party_you": "{party} — you",
    "roster.joined_so_far.one": "{count} party has joined so far, out of {parties}.",
    "roster.joined_so_far.other": "{count} parties have joined so far, out of {parties}.",
    "roster.round": "Round {round}.",
    "roster.summary": (
        "{present} of {parties} here, {ready} ready. The computation starts when everyone is "
        "here and ready."),
    "pair.between": "Party {a} ↔ party {b}",
    "pair.with_path": "{state}, {path}",
    "identity.name_claimed": "The name is what {who} states; the key is what was checked.",
    "identity.fingerprint": "fingerprint {fingerprint}",
    "identity.fingerprint_named": "fingerprint {fingerprint} · name as {who} states it",
    "identity.claimed": "{who}: {identity}",
    "identity.server_says": (
        "the key it joined with, as the server says; checked once your computers connect"),
    "identity.server_says_print": (
        "fingerprint {fingerprint} · the key it joined with, as the server says; checked once "
        "your computers connect"),
    # the chat
    "chat.you": "you",
    "chat.key_verified": "The key {who}'s connection to you was verified with.",
    "chat.key_signed": (
        "The key {who} signed this message with (its connection to you is not verified yet)."),
    "chat.fingerprint_verified": "{fingerprint} ✓",
    "chat.no_key": "(no valid key)",
    # the lobby's static text (web/join.html, data-say="...")
    "join.page_title": "Secure computation lobby",
    "ended.start_new": "Start a new session",
    "join.title": "Secure computation",
    "join.lead": (
        "Compute a result together with the other parties. Everyone learns the result, but "
        "not each other's inputs."),
    "join.status_label": "Status",
    "status.opening": "Opening the session…",
    "join.progress_label": "Progress",
    "join.round_progress_label": "How far the computation has got",
    "join.copy_identity_title": (
        "Copy your did:key, to send it to someone who keeps a place for you"),
    "button.copy": "Copy",
    "join.result_title": "Result",
    "join.copy_result_title": "Copy the result, to paste it elsewhere",
    "join.output": "What the program printed",
    "button.run_again": "Run again",
    "join.history": "Earlier rounds",
    "join.invite_help": (
        "Send them this link. Each person opens it in a browser (or runs {command})."),
    "join.invite_link_label": "Invite link",
    "join.qr_alt": "QR code of the invite link",
    "join.places_title": "Which party are you?",
    "join.places_help": "The person who created this session named the places. Pick yours.",
    "join.me_title": "Your part",
    "join.you_are": "You are",
    "join.not_joined": "not joined yet",
    "join.session": "Session",
    "join.parties": "Parties",
    "join.your_name": "Your name {optional}",
    "join.optional": "(optional, shown to the others)",
    "join.input_label": "Your private input",
    "join.accept_no_privacy": (
        "{box} I understand: the other parties can learn my input in this session."),
    "button.unready": "Change my input",
    "join.roster_title": "Parties",
    "join.pairs_title": "Connections",
    "join.relay_note": (
        "Relay only: every connection goes through the server's relay, so no party learns "
        "the others' network addresses."),
    "join.chat_title": "Chat",
    "join.chat_help": (
        "Your messages go to every party here, signed with your key; the server passes them "
        "on but cannot read them. Never write your private input here."),
    "join.chat_label": "Chat message",
    "join.chat_placeholder": "Write to everyone in the session",
    "button.send": "Send",
    "join.program_title": "The program",
    "join.fingerprint": "Fingerprint: {fingerprint} {check}",
    "join.fingerprint_help": (
        "Every party sees the fingerprint of the code its own browser runs. Compare it with "
        "the others (read it out on the phone, say): if it differs, you are not running the "
        "same program and should not go on."),
    "join.show_code": "Show the code",
    "join.log": "Technical log",
    # the create page (web/create.html, web/create.js)
    "create.page_title": "Start a secure computation",
    "create.title": "Compute together, keep your inputs private",
    "create.lead": (
        "Pick a question, say how many people take part, and share the link. Everyone "
        "learns the answer; nobody, not even this server, sees anyone else's input. It runs "
        "in the browser: nothing to install."),
    "create.what_title": "1. What do you want to compute?",
    "create.loading_library": "Loading the program library…",
    "create.show_code": "Show the program's code",
    "create.own_program": "Your MPyC program",
    "create.editor_help": (
        "Plain MPyC, as you would run it with {run}. Each party's input arrives as {input}."),
    "create.editor_keys": (
        "Tab indents; to leave the editor with the keyboard, press Esc, then Tab."),
    "create.who_title": "2. Who takes part?",
    "create.parties_count": "Number of parties",
    "create.labels_title": "Names for the places {optional}",
    "create.optional": "(optional)",
    "create.labels_help": (
        "For example \"hospital A\", \"hospital B\". People joining pick their place; "
        "otherwise places are given out in the order people arrive."),
    "create.pins_title": "Keep places for particular people {optional}",
    "create.pins_help": (
        "Paste a person's key (their did:key, shown as \"You are did:key:…\" on their lobby "
        "page or by {command}): only that key can take the place, and everyone checks it is "
        "the one in it."),
    "create.my_role": "You take part as",
    "create.relay_only": "{box} Hide our network addresses from each other",
    "create.checking_relay": "Checking this server for a relay…",
    "create.advanced": "Advanced: program arguments",
    "create.args": "Arguments for the program",
    "create.args_placeholder": "e.g. --no-log",
    "create.args_help": (
        "Passed to every party's program, separated by spaces. Options that decide who the "
        "parties are (like -M or -I) are set for you."),
    "create.no_privacy": "{box} Allow a session that keeps inputs less private than it could",
    "create.no_privacy_help": (
        "With 2 parties, or a threshold (-T) below MPyC's default, the parties can learn each "
        "other's inputs. The server refuses such a session unless you allow it here, and "
        "everyone who joins is told and must agree."),
    "create.create": "Create the session",
    "create.create_help": "You will get a link to send to the others, and go to the lobby.",
    "create.group_own": "Your own",
    "create.own_title": "Your own MPyC program",
    "create.own_summary": "Write or paste MPyC code; every party runs exactly this code.",
    "create.asks_nothing": "Nobody enters anything.",
    "create.asks": "Each party enters: {what}.",
    "create.asks_their": "their ",
    "create.count_wrong": "The number of parties must be a whole number from {min} to {max}.",
    "create.count_help": "{min} to {max} people or organisations, counting you.",
    "create.label_for": "Name for party {number}",
    "create.label_twice": (
        "Another place is already called \"{name}\": each place needs a name of its own."),
    "create.me": "Me",
    "create.me_title": "Keep this place for your own key (this browser's)",
    "create.pin_label": "Kept for the key (did:key) of {place}",
    "create.pin_not_key": "Not a key: {reason} Paste the whole did:key the person sent you.",
    "create.pin_twice": (
        "This key already has party {number}'s place; a key can be kept one place only."),
    "create.pin_not_mine": (
        "You take part as this place, but it is kept for another key: you could not join it. "
        "Choose another place for yourself, or clear this field."),
    "create.pin_mine": "Kept for you (this browser's key).",
    "create.pin_only": "Only this key can take the place.",
    "create.creating": "Creating…",
    "create.load_failed": "{reason} Reload the page to try again.",
    "server.unreachable": (
        "Could not reach the session server at {host}. Check your network connection and "
        "try again."),
    "server.answered": "The session server answered {status} {text}; try again in a moment.",
    "create.relay_help": (
        "All traffic then goes through the server's relay: slower, but no party learns where "
        "the others are. Your inputs stay secret either way."),
    "create.no_relay_help": (
        "This server has no relay, so your computers connect directly and can see each "
        "other's network addresses. Your inputs stay secret either way."),
    "create.filled_in": (
        "Filled in with the settings of the session that closed. Check them and press "
        "\"Create the session\": you get a new link to send to the others."),
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


def translation(language: str) -> dict[str, str]:
    """The sentences of ``TRANSLATIONS/LANG.json`` for ``language`` (``pt-BR`` looks for
    ``pt-br.json``, then ``pt.json``); {} without one. A sentence with a field the English
    one lacks is left out (the English stays: nobody would fill that field in), as are keys
    the table does not have."""
    tag = language.strip().lower().replace("_", "-")
    if not _LANGUAGE.fullmatch(tag):
        return {}
    parts = tag.split("-")
    for end in range(len(parts), 0, -1):
        path = TRANSLATIONS / f"{'-'.join(parts[:end])}.json"
        if path.is_file():
            break
    else:
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("translation %s is unreadable: %s", path.name, exc)
        return {}
    if not isinstance(table, dict):
        logger.warning("translation %s is not a JSON object", path.name)
        return {}
    fitting = {}
    for key, text in table.items():
        english = SENTENCES.get(key)
        if english is None or not isinstance(text, str):
            continue
        if not set(_FIELD.findall(text)) <= set(_FIELD.findall(english)):
            logger.warning("translation %s: %s has fields the English has not", path.name, key)
            continue
        fitting[key] = text
    return fitting


def document(language: str = "") -> dict[str, str]:
    """The table as JSON for the page, in ``language`` where a translation has the
    sentence, else in English."""
    return {**SENTENCES, **translation(language)} if language else dict(SENTENCES)
