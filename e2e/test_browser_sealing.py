"""Sealed signaling in the browser: the same construction as the native peer, and a
tampering relay between the browsers and the server is caught every time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mpyc_webrtc import programs
from mpyc_webrtc.launch import program_hash
from mpyc_webrtc.sentences import say
from testbed import chromium
from testbed.browser import BrowserParty
from testbed.netns import TamperProxy

VECTORS = Path(__file__).parent.parent / "tests" / "sealing_vectors.json"
PROXY_PORT = 8090


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
                outcomes.push({ok: await me.open(m.from, m.seq, m.box)});
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
    url = server.create(2, "--program", "sum")
    party = BrowserParty(new_page(), url.split("#")[0], wait_joined=False)
    expect(party["status"]).to_have_text("Incomplete link")
    expect(party["error"]).to_have_text(say("link.missing_secret"))


def test_wrong_secret_is_refused_by_the_server(server, new_page):
    url = server.create(2, "--program", "sum")
    base, fragment = url.split("#")
    params = dict(p.split("=") for p in fragment.split("&"))
    wrong = "A" * 43  # 32 zero bytes: a well-formed but wrong secret
    party = BrowserParty(new_page(), f"{base}#k={wrong}&p={params['p']}", wait_joined=False)
    expect(party["status"]).to_have_text("Could not join")
    expect(party["error"]).to_contain_text("This link is incomplete or wrong")


@pytest.fixture
def proxy(server):
    """A tampering relay in front of the server; ``start(mode)`` gives it (netns.TamperProxy)."""
    proxies: list[TamperProxy] = []

    def start(mode: str) -> TamperProxy:
        proxies.append(TamperProxy(server.ns, server, mode, PROXY_PORT + len(proxies)))
        return proxies[-1]

    yield start
    for each in proxies:
        each.proc.terminate()
        each.proc.wait(10)


@pytest.mark.parametrize("mode", ["flip-box", "replay", "swap-from"])
def test_tampered_signaling_is_caught_by_browsers(server, new_page, proxy, mode):
    url = proxy(mode).link(server.create(2, "--program", "sum"))
    parties = [BrowserParty(new_page(), url) for _ in range(2)]
    for party, value in zip(parties, ["5", "7"], strict=True):
        party.wait_python()
        party.enter(value)
        party["ready"].click()
    caught = []
    for party in parties:
        try:
            expect(party["status"]).to_have_text("Tampering detected", timeout=60_000)
        except AssertionError:
            continue
        caught.append(party)
    assert caught, [p.describe("was not told") for p in parties]
    words = {"flip-box": "failed authentication", "swap-from": "failed authentication",
             "replay": "arrived again (replayed)"}[mode]
    expect(caught[0]["error"]).to_contain_text(re.compile(
        rf"^Tampering detected: .*{re.escape(words)}.*Stop, and do not take part in this "
        r"session\.$"))
    for party in parties:  # nobody computed anything
        expect(party["result"]).to_be_hidden()
        assert party["status"].inner_text() != "Done"


@pytest.mark.parametrize("mode", ["swap-program", "swap-welcome"])
def test_swapped_program_is_caught_before_anyone_connects(server, new_page, proxy, mode):
    url = proxy(mode).link(server.create(2, "--program", "sum"))
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
    url = relay.link(server.create(2, "--program", "sum"))
    # Loopback ICE needs the camera/microphone permission for the page's origin: the relay's.
    contexts = [chromium.new_context(browser, relay.url) for _ in range(2)]
    try:
        parties = [BrowserParty(context.new_page(), url) for context in contexts]
        parties[0].confirm("5")
        parties[1].confirm("7")
        assert [p.wait_done().strip() for p in parties] == ["sum = 12"] * 2
    finally:
        for context in contexts:
            context.close()
