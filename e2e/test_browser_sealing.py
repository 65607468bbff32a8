"""Sealed signaling in the browser: the same construction as the native peer, and a
tampering relay between the browsers and the server is caught every time.

The tampering relay (testbed/tamper_proxy.py) stands between one browser and the server;
where a session needs more parties, native peers join the server directly (a server may
cheat one party alone). Every refusal is checked as the whole sentence, and that nothing
was connected, run or computed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mpyc_webrtc import launch, programs
from mpyc_webrtc.launch import program_hash
from mpyc_webrtc.sentences import place, say
from testbed import chromium
from testbed.browser import BrowserParty
from testbed.netns import Server, TamperProxy, start_peer

VECTORS = Path(__file__).parent.parent / "tests" / "sealing_vectors.json"
ANNOUNCE = Path(__file__).parent / "programs" / "announce.py"
PROXY_PORT = 8090
TURN_PORT = 8085
#: TURN servers for a server on which relay-only sessions can be created; nothing listens
#: there (every party is stopped before it gathers a candidate). That second server in the
#: namespace leaves STUN to the first one, which holds the STUN port.
FAKE_TURN = ("--turn", "turn:127.0.0.1:3480", "--turn-secret", "no-relay-here",
             "--stun-port", "0")
#: Native peers waiting for a browser that was stopped give up this soon.
CONNECT = ("--connect-timeout", "10")
NATIVE_TIMEOUT = 120


def sealing_module(page, server_url: str) -> None:
    page.goto(f"{server_url}/api/protocol")
    page.evaluate("""async () => {
        window.sealing = await import('/web/sealing.js');
        const { Sentences } = await import('/web/sentences.js');
        window.sentences = new Sentences(await (await fetch('/api/sentences')).json());
    }""")


def test_browser_sealing_matches_the_python_vectors(server, new_page):
    page = new_page()
    sealing_module(page, server.url)
    vectors = json.loads(VECTORS.read_text())
    for vector in vectors["seal"]:
        got = page.evaluate("""async (v) => {
            const hex = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
            const secret = hex(v.secret_hex);
            const link = sealing.parseFragment('#' + v.fragment, sentences);
            const {token, tokenHash} = await sealing.joinToken(secret);
            const me = await sealing.Sealer.create(secret, v.session, v.from, 32, sentences);
            me.sent.set(v.to, v.seq - 1);
            const sealed = await me.seal(v.to, v.payload, hex(v.nonce_hex));
            const them = await sealing.Sealer.create(secret, v.session, v.to, 32, sentences);
            them.received.set(v.from, v.seq - 1);
            const opened = await them.open(v.from, v.seq, v.box);
            return {token, tokenHash, sealed, opened, hash: link.programHash,
                    same: sealing.toHex(link.secret) === v.secret_hex};
        }""", vector)
        assert got["token"] == vector["token"]
        assert got["tokenHash"] == vector["token_hash"]
        assert got["sealed"] == {"to": vector["to"], "seq": vector["seq"], "box": vector["box"]}
        assert got["opened"] == vector["payload"]
        assert got["hash"] == vector["program_hash"] and got["same"]
    descriptor = vectors["descriptor"]
    got = page.evaluate("""async (v) => {
        const hex = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
        const secret = hex(v.secret_hex);
        return {
            sealed: await sealing.sealDescriptor(secret, v.descriptor, hex(v.nonce_hex)),
            opened: await sealing.openDescriptor(secret, v.box),
            refused: await Promise.all(v.refused.map((b) => sealing.openDescriptor(secret, b))),
        };
    }""", descriptor)
    assert got == {"sealed": descriptor["box"], "opened": descriptor["descriptor"],
                   "refused": [None] * len(descriptor["refused"])}
    refused = vectors["open"]
    outcomes = page.evaluate("""async (v) => {
        const hex = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
        const me = await sealing.Sealer.create(hex(v.secret_hex), v.session, v.receiver,
                                               v.parties, sentences);
        const outcomes = [];
        for (const m of v.messages) {
            try {
                const opened = m.chat ? me.openChat(m.from, m.seq, m.box)
                                      : me.open(m.from, m.seq, m.box);
                outcomes.push({ok: await opened});
            } catch (error) {
                outcomes.push({error: error.message, tamper: error instanceof sealing.TamperError});
            }
        }
        return outcomes;
    }""", refused)
    assert len(outcomes) == len(refused["messages"])
    for message, outcome in zip(refused["messages"], outcomes, strict=True):
        if message["expect"] == "ok":
            assert outcome == {"ok": message["payload"]}
        else:
            assert outcome["tamper"], outcome
            assert outcome["error"] == message["message"]  # the whole sentence


def test_browser_program_hash_matches_python_for_every_builtin(server, new_page):
    page = new_page()
    sealing_module(page, server.url)
    for name in programs.CATALOG:
        for args in ([], ["--no-log", "-L 64", "é€😀"]):
            got = page.evaluate("(a) => sealing.programHash(a[0], a[1])",
                                [programs.source(name), args])
            assert got == program_hash({"name": name, "args": args, "builtin": True})


def test_link_without_its_secret_is_refused_in_words(server, new_page):
    url = server.create(3, "--program", "sum")
    party = BrowserParty(new_page(), url.split("#")[0], wait_joined=False)
    expect(party["status"]).to_have_text("Incomplete link")
    expect(party["error"]).to_have_text(say("link.missing_secret"))


def test_wrong_secret_is_refused_by_the_server(server, new_page):
    url = server.create(3, "--program", "sum")
    base, fragment = url.split("#")
    params = dict(p.split("=") for p in fragment.split("&"))
    wrong = "A" * 43  # 32 zero bytes: a well-formed but wrong secret
    party = BrowserParty(new_page(), f"{base}#k={wrong}&p={params['p']}", wait_joined=False)
    # The # part was there: the page says the link is wrong, not that a part is missing.
    expect(party["status"]).to_have_text("Wrong link")
    expect(party["error"]).to_have_text(say("link.wrong_secret"))


@pytest.fixture
def proxy(server):
    """A tampering relay in front of the server; ``start(mode)`` gives it (netns.TamperProxy)."""
    proxies: list[TamperProxy] = []

    def start(mode: str, upstream: Server | None = None) -> TamperProxy:
        proxies.append(TamperProxy(server.ns, upstream or server, mode,
                                   PROXY_PORT + len(proxies)))
        return proxies[-1]

    yield start
    for each in proxies:
        each.proc.terminate()
        each.proc.wait(10)


def natives_then_browser(server: Server, url: str, page, link: str, *native_args: str):
    """Native peers 0 and 1 on the server itself, then a browser (party 2) on ``link``."""
    natives = []
    for i, value in enumerate(["1", "2"]):
        natives.append(start_peer(server.ns, url, "--input", value, *CONNECT, *native_args))
        server.wait_joined(url, i + 1)
    browser = BrowserParty(page, link)
    assert browser.pid == 2
    return natives, browser


def finished(natives: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    return [(p.wait(NATIVE_TIMEOUT), p.stdout.read(), p.stderr.read()) for p in natives]


def nothing_computed(party: BrowserParty) -> None:
    expect(party["result"]).to_be_hidden()
    expect(party["output"]).to_have_text("")
    assert party["status"].inner_text() != "Done"
    assert party["roster"].locator("[data-state=computing]").count() == 0
    assert party["pairs"].locator("[data-state=ready]").count() == 0


def logged(relay, text: str, timeout: float = 10.0) -> str:
    """The relay's log line holding ``text``: its log is read from a pipe by a thread, so
    the line may come a moment after the page already stopped."""
    deadline = time.monotonic() + timeout
    while True:
        found = next((line for line in list(relay.log) if text in line), None)
        if found is not None or time.monotonic() > deadline:
            assert found is not None, list(relay.log)
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["flip-box", "replay", "swap-from", "replay-typed"])
def test_tampered_signaling_is_caught_by_browsers(server, new_page, proxy, mode):
    relay = proxy(mode)
    url = server.create(3, "--program", "sum")
    natives, party = natives_then_browser(server, url, new_page(), relay.link(url))
    party.wait_python()
    party.enter("7")
    party["ready"].click()  # the start follows at once: the natives joined ready
    expect(party["status"]).to_have_text("Tampering detected", timeout=60_000)
    # What the relay changed, in its log; the browser says so in the whole sentence.
    changed = logged(relay, f"{mode}: ")
    sender = int(re.search(r"from party (\d+)", changed).group(1))
    seq = int(re.search(r"signal (\d+) from", changed).group(1))
    assert re.search(r"to party 2\b", changed), changed
    if mode == "swap-from":
        fake = int(re.search(r"now says it is from party (\d+)", changed).group(1))
        says = say("tamper.failed_authentication", who=place(fake))
    elif mode == "replay":
        says = say("tamper.replayed", seq=seq, who=place(sender))
    elif mode == "replay-typed":  # a sender that is the string "0" or "1", not a party number
        says = say("tamper.failed_authentication", who=place(str(sender)))
    else:  # a changed box
        says = say("tamper.failed_authentication", who=place(sender))
    expect(party["error"]).to_have_text(says)
    nothing_computed(party)
    for code, out, _err in finished(natives):
        assert code != 0 and out == ""


@pytest.mark.parametrize("mode", ["swap-program", "swap-welcome"])
def test_swapped_program_is_caught_before_anyone_connects(server, new_page, proxy, mode):
    url = proxy(mode).link(server.create(3, "--program", "sum"))
    for _ in range(2):
        party = BrowserParty(new_page(), url, wait_joined=False)
        expect(party["status"]).to_have_text("Tampering detected", timeout=90_000)
        expect(party["error"]).to_contain_text(
            "Tampering detected: the server gave this party a different program than the one "
            "the session's creator chose")
        expect(party["fingerprint"]).to_have_text(re.compile(r"^[0-9a-f]{4}( [0-9a-f]{4}){4}$"))
        assert party["roster"].locator("[data-state=computing]").count() == 0


def test_an_honest_relay_changes_nothing(server, browser, proxy):
    relay = proxy("none")
    url = relay.link(server.create(3, "--program", "sum"))
    # Loopback ICE needs the camera/microphone permission for the page's origin: the relay's.
    contexts = [chromium.new_context(browser, relay.url) for _ in range(2)]
    try:
        parties = [BrowserParty(context.new_page(), url) for context in contexts]
        native = start_peer(server.ns, url, "--input", "30")  # party 2, through the relay too
        parties[0].confirm("5")
        parties[1].confirm("7")
        assert [p.wait_done().strip() for p in parties] == ["sum = 42"] * 2
        out, err = native.communicate(timeout=NATIVE_TIMEOUT)
        assert native.returncode == 0, err[-3000:]
        assert out.strip() == "sum = 42"
    finally:
        for context in contexts:
            context.close()


# -- the session's shape, the sealing's constants, a start nobody agreed to --------------------

LABELS = ("hospital A", "hospital B", "hospital C")


def shape(what: str, chosen: str, said: str) -> str:
    return say("tamper.shape", what=say(f"shape.{what}"), chosen=chosen, said=said)


#: mode: (parties, create options, whether the server needs a relay, what the page says)
BROWSER_LIES = {
    "halve-parties": (4, ("--program", "sum"), False, shape("parties", "4", "2")),
    "drop-relay-only": (3, ("--program", "sum", "--relay-only"), True,
                        shape("relay_only", "yes", "no")),
    "rename-places": (3, ("--program", "sum", "--labels", *LABELS), False,
                      shape("labels", '"hospital A", "hospital B", "hospital C"',
                            '"hospital C", "hospital B", "hospital A"')),
    "drop-descriptor": (3, ("--program", "sum"), False, say("tamper.no_descriptor")),
    # The page joins not ready; a start right after the welcome is the server's own idea.
    "unprompted-start": (3, ("--program", "sum"), False,
                         say("tamper.unprompted_start", round=1)),
}


@pytest.fixture
def relay_server(server):
    """A second server in the namespace, with (fake) TURN servers: relay-only sessions."""
    made: list[Server] = []

    def start() -> Server:
        made.append(Server(server.ns, TURN_PORT, *FAKE_TURN))
        return made[-1]

    yield start
    for each in made:
        each.proc.terminate()
        each.proc.wait(10)


@pytest.mark.parametrize("mode", list(BROWSER_LIES))
def test_a_lie_about_the_session_stops_the_page_before_it_connects(
        server, new_page, proxy, relay_server, mode):
    parties, options, needs_relay, says = BROWSER_LIES[mode]
    upstream = relay_server() if needs_relay else server
    relay = proxy(mode, upstream)
    url = relay.link(upstream.create(parties, *options))
    party = BrowserParty(new_page(), url, wait_joined=False)
    if mode == "rename-places":  # the places as the server names them: choose the first
        expect(party["status"]).to_have_text("Choose your place")
        expect(party["place-0"]).to_have_text(re.compile("hospital C"))
        party["place-0"].click()
    expect(party["status"]).to_have_text("Tampering detected", timeout=60_000)
    expect(party["error"]).to_have_text(says)
    assert relay.logged(f"tamper proxy: {mode}: "), list(relay.log)
    nothing_computed(party)
    expect(party["pairs-box"]).to_be_hidden()  # no round ever started here
    expect(party["ready"]).to_be_disabled()
    if mode == "halve-parties":
        expect(party["error"]).to_have_text(
            "Tampering detected: the server changed the number of parties: the session's "
            "creator chose 4, the server says 2. Stop, and do not take part in this session.")


def test_a_server_that_edits_the_sealing_constants_is_refused_before_joining(
        server, new_page, proxy):
    """GET /api/protocol with the key's label as the token's: a page that took the
    constants from there would send the sealing key as its join token."""
    relay = proxy("edit-protocol")
    url = server.create(3, "--program", "sum")
    party = BrowserParty(new_page(), relay.link(url), wait_joined=False)
    expect(party["status"]).to_have_text("Tampering detected")
    expect(party["error"]).to_have_text(say("tamper.protocol", what="token_info"))
    expect(party["error"]).to_have_text(
        "Tampering detected: the server describes the sealing differently from this page "
        "(token_info differs), which could give it the session's keys. Stop, and do not "
        "take part in this session.")
    expect(party["me"]).to_be_hidden()
    assert relay.logged("edit-protocol: token_info"), list(relay.log)
    assert server.info(url)["joined"] == 0  # no token was ever sent


# -- the worker runs only a checked program ---------------------------------------------------

#: Before the page's own scripts: note every message the page posts to its worker, and hold
#: the worker's answer to "fingerprint" until the test releases it, as a slow computer
#: would be late with it (the page itself is unchanged).
SLOW_CHECK = """
(() => {
  const Real = window.Worker;
  window.postedToWorker = [];
  const held = [];
  let released = false;
  window.releaseFingerprint = () => {
    released = true;
    for (const deliver of held.splice(0)) deliver();
  };
  window.Worker = class extends Real {
    postMessage(message, transfer) {
      window.postedToWorker.push(message && message.type);
      return transfer === undefined ? super.postMessage(message)
        : super.postMessage(message, transfer);
    }
    set onmessage(handler) {
      super.onmessage = (event) => {
        if (!released && event.data && event.data.type === 'fingerprint') {
          held.push(() => handler.call(this, event));
        } else {
          handler.call(this, event);
        }
      };
    }
    get onmessage() { return super.onmessage; }
  };
})();
"""


@pytest.mark.parametrize("mode", ["none", "swap-welcome"])
def test_the_worker_runs_the_program_only_once_it_is_checked(server, browser, proxy, mode):
    """While the page's check of the program is still out, the person cannot say "I'm ready"
    (the check also tells how private the session is), so no round can start and nothing is
    posted to the worker but the check; a program the server swapped never runs."""
    relay = proxy(mode)
    url = server.create(3, "--program-file", str(ANNOUNCE))
    context = chromium.new_context(browser, relay.url)
    context.add_init_script(SLOW_CHECK)
    try:
        natives, party = natives_then_browser(server, url, context.new_page(),
                                              relay.link(url), "--trust-program")
        expect(party["fingerprint-check"]).to_contain_text("checking the code")
        party.wait_python()
        party.enter("39")
        # The natives are ready and waiting; this page cannot join them before its check.
        expect(party["ready"]).to_be_disabled()
        party.page.wait_for_timeout(2000)
        expect(party["ready"]).to_be_disabled()
        expect(party["status"]).not_to_have_text("Connecting to the other parties")
        posted = party.page.evaluate("window.postedToWorker")
        assert "fingerprint" in posted and not {"run", "start", "channel"} & set(posted), posted
        party.page.evaluate("window.releaseFingerprint()")
        if mode == "none":
            party.confirm("39")
            assert party.wait_done() == "this program is running\ntotal = 42\n"
            assert "run" in party.page.evaluate("window.postedToWorker")
            for code, out, err in finished(natives):
                assert code == 0, err[-3000:]
                assert out == "this program is running\ntotal = 42\n"
            return
        source = ANNOUNCE.read_text()
        link_hash = launch.program_hash({"name": "announce.py", "args": [], "builtin": False,
                                         "source": source})
        swapped = launch.program_hash({"name": "announce.py", "args": [], "builtin": False,
                                       "source": source + "\n# changed by the tamper proxy\n"})
        expect(party["status"]).to_have_text("Tampering detected")
        expect(party["error"]).to_have_text(say("tamper.server_program",
                                                ours=launch.fingerprint(swapped),
                                                link=launch.fingerprint(link_hash)))
        assert "run" not in party.page.evaluate("window.postedToWorker")
        nothing_computed(party)
        assert "this program is running" not in party["log"].text_content()
        # No round ever started: the natives still wait in the lobby, their program (theirs,
        # not the page's) stopped at mpc.start() and computed nothing.
        for native in natives:
            assert native.poll() is None
            native.terminate()  # the peers this test started
        for _code, out, _err in finished(natives):
            assert out == "this program is running\n"
    finally:
        context.close()
