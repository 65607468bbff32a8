"""Identities in the browser (issue 17): each page's own key, the others' keys verified on
their peer connections (browsers and a native peer), chat in the lobby and after the result,
places kept for a key, and what a browser remembers of the keys it computed with.

Chromium and the native peers run in the module's loopback-only network namespace
(conftest.py); each native peer has its own key file in a temporary folder (never the
home directory's).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from mpyc_webrtc import known
from mpyc_webrtc.identity import Identity
from testbed.browser import BrowserParty
from testbed.netns import BIN, Namespace, StderrLines, native_output, start_peer

DID = re.compile(r"did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+")
FINGERPRINT = re.compile(r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){3}")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
#: An uploaded program for any number of parties: the total of their inputs.
TOTAL = Path(__file__).parent.parent / "tests" / "programs" / "total.py"
#: Set MPYC_WEBRTC_SCREENSHOTS=DIR to keep screenshots of the pages checked at a phone's size.
SHOTS = os.environ.get("MPYC_WEBRTC_SCREENSHOTS")
#: A chat message that would be markup if a page ever took it for HTML.
MARKUP = "hello from party 0 <img src=x onerror=alert(1)> & <b>bold</b>"


def own_identity(party: BrowserParty) -> tuple[str, str]:
    """The did:key and fingerprint a page says it is ("You are ...")."""
    expect(party["my-identity"]).to_contain_text("You are did:key:z6Mk", timeout=30_000)
    text = party["my-identity"].inner_text()
    return DID.search(text).group(), FINGERPRINT.search(text).group()


def native_identity(ns: Namespace, key_file: Path) -> str:
    """A native peer's did:key, from ``mpyc-webrtc-peer identity`` (made the first time)."""
    done = ns.run([str(BIN / "mpyc-webrtc-peer"), "identity", "--identity", str(key_file)])
    assert done.returncode == 0, done.stderr
    did = done.stdout.splitlines()[0]
    assert DID.fullmatch(did), did
    return did


def confirm_as(party: BrowserParty, name: str, value: str, **options) -> int:
    """Type a name, then the input, and press "I'm ready"."""
    party.wait_joined()
    party["your-name"].fill(name)
    return party.confirm(value, **options)


def fits_a_phone(page: Page, name: str) -> None:
    """The page needs no sideways scrolling on a phone (390x844)."""
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}-phone.png", full_page=True)
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=f"{SHOTS}/{name}-desktop.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    assert overflow <= 0, f"{name} is {overflow}px too wide on a phone"


def test_browsers_and_a_native_peer_verify_each_other_and_chat(server, new_page, tmp_path):
    """Two browsers and a native peer: each browser shows the others' keys as verified,
    with the right did:key (the native's as ``mpyc-webrtc-peer identity`` prints it), and a
    chat message written in one browser reaches the other and the native peer, in the lobby
    (sealed, through the server) and after the result (over the chat data channel)."""
    key_file = tmp_path / "native" / "identity.pem"
    native_did = native_identity(server.ns, key_file)
    url = server.create(3, "--program", "sum")
    first = BrowserParty(new_page(), url)
    assert first.pid == 0
    did_first, print_first = own_identity(first)
    native = start_peer(server.ns, url, "--input", "1000", "--name", "Nat",
                        "--identity", str(key_file))
    stderr = StderrLines(native)
    server.wait_joined(url, 2)
    last = BrowserParty(new_page(), url)
    assert last.pid == 2
    did_last, _ = own_identity(last)
    assert len({did_first, did_last, native_did}) == 3
    # The roster already shows the key each party joined with, as the server says it.
    expect(last["identity-0"]).to_have_attribute("data-verified", "false")
    expect(last["identity-0"]).to_contain_text(did_first)

    # Chat in the lobby: sealed, through the server; shown as text, never as markup. (It
    # goes to whoever the writer's roster shows: wait until that has everyone.)
    expect(first["peer-2"]).to_have_attribute("data-state", "joined")
    expect(first["chat"]).to_be_visible()
    first["chat-input"].fill(MARKUP)
    first["chat-input"].press("Enter")
    expect(first["chat-input"]).to_have_value("")
    message = last["chat-log"].get_by_test_id("chat-message").first
    expect(message).to_contain_text(MARKUP)
    expect(message).to_contain_text(f"party 1 {print_first}")  # pid 0: people count from 1
    expect(message).to_have_attribute("data-bound", "false")  # no connection yet
    assert last["chat-log"].locator("img, b").count() == 0
    assert stderr.wait_for(MARKUP)
    # Nothing to say, or too much: said by the field, nothing sent.
    first["chat-send"].click()
    expect(first["chat-refused"]).to_have_text("Write a message first.")
    first["chat-input"].evaluate("(input) => { input.removeAttribute('maxlength'); }")
    first["chat-input"].fill("x" * 501)
    first["chat-send"].click()
    expect(first["chat-refused"]).to_have_text(
        "A chat message can be at most 500 characters; this one has 501.")
    first["chat-input"].fill("")

    assert confirm_as(first, "Alice", "5") == 0
    assert confirm_as(last, "Bob", "7") == 2
    expected = f"sum = {5 + 1000 + 7}"
    assert first.wait_done().strip() == expected
    assert last.wait_done().strip() == expected
    assert native_output(native) == expected

    # Every browser verified both others, with the did:key each showed as its own.
    for party, others in ((first, {1: (native_did, "Nat"), 2: (did_last, "Bob")}),
                          (last, {0: (did_first, "Alice"), 1: (native_did, "Nat")})):
        for pid, (did, name) in others.items():
            box = party[f"identity-{pid}"]
            expect(box).to_have_attribute("data-verified", "true")
            expect(box).to_contain_text(f"party {pid + 1}: {name}, {did} (verified)")
            expect(box).to_contain_text(f"name as party {pid + 1} states it")
            expect(box).to_contain_text("new key")
    # And the native peer verified the browsers' keys (lines on its stderr).
    for pid, did, name in ((0, did_first, "Alice"), (2, did_last, "Bob")):
        stderr.wait_for(f"party {pid + 1}: {name}, {did} (verified)")

    # After the result, the browsers still chat: over the peer connection's chat channel.
    last["chat-input"].fill("after the result")
    last["chat-send"].click()
    received = first["chat-log"].get_by_test_id("chat-message").filter(has_text="after the result")
    expect(received).to_contain_text("party 3 · Bob")
    expect(received).to_have_attribute("data-bound", "true")  # the key of the connection
    expect(last["log"]).to_contain_text("chat message 1 to party 0 over the data channel")
    fits_a_phone(first.page, "identities-lobby")


def test_a_place_kept_for_a_key_refuses_others_and_takes_its_owner(server, new_page):
    """The create page keeps party 1's place for browser A's key: browser B asking for
    that place is refused with the server's sentence; A, joining without asking for a
    place, gets it."""
    owner_page = new_page()
    owner_page.goto(f"{server.url}/")
    owner_page.get_by_test_id("pins-box").locator("summary").click()
    expect(owner_page.get_by_test_id("my-identity")).to_contain_text("You are did:key:z6Mk")
    text = owner_page.get_by_test_id("my-identity").inner_text()
    did_owner, print_owner = DID.search(text).group(), FINGERPRINT.search(text).group()

    creator = new_page()
    creator.goto(f"{server.url}/")
    creator.get_by_test_id("program-choice-sum").check()
    creator.get_by_test_id("parties-count").fill("3")
    creator.get_by_test_id("pins-box").locator("summary").click()
    # Checked as typed: not a key, then the same key for two places.
    creator.get_by_test_id("pin-1").fill("did:key:z6Mkbogus")
    expect(creator.get_by_test_id("pin-help-1")).to_contain_text("Not a key")
    expect(creator.get_by_test_id("create")).to_be_disabled()
    creator.get_by_test_id("pin-1").fill(did_owner)
    creator.get_by_test_id("pin-2").fill(did_owner)
    expect(creator.get_by_test_id("pin-help-2")).to_contain_text(
        "This key already has party 2's place")
    expect(creator.get_by_test_id("create")).to_be_disabled()
    creator.get_by_test_id("pin-2").fill("")
    expect(creator.get_by_test_id("create")).to_be_enabled()
    fits_a_phone(creator, "create-pins")
    creator.get_by_test_id("create").click()
    invite = creator.get_by_test_id("invite-link")
    expect(invite).to_have_value(re.compile(r"/join/"))
    link = invite.input_value()
    first = BrowserParty(creator, creator.url)
    assert first.pid == 0

    base, fragment = link.split("#", 1)
    other = BrowserParty(new_page(), f"{base}?role=1#{fragment}", wait_joined=False)
    _, print_other = own_identity(other)
    expect(other["status"]).to_have_text("Could not join")
    expect(other["error"]).to_contain_text(
        f"The place of party 2 is kept for someone else's key (fingerprint {print_owner}); "
        f"you joined with {print_other}.")

    owner = BrowserParty(owner_page, link)  # no place asked for: the one kept for it
    assert owner.pid == 1
    assert own_identity(owner)[0] == did_owner
    # Its page found the creator's sealed word (pins included) the same as the server's.
    expect(owner["log"]).to_contain_text("the session is as its creator chose it")
    expect(owner["status"]).not_to_have_text("Tampering detected")


def test_named_places_offer_a_kept_place_to_its_key_only(server, new_page):
    """A session made by the native peer (``create --pin``) with named places: the place
    kept for browser A's key is offered to A only ("kept for you"), and A's page finds
    the native creator's sealed word (pins included) the same as the server's."""
    owner_page = new_page()
    owner_page.goto(f"{server.url}/")
    expect(owner_page.get_by_test_id("my-identity")).to_contain_text("You are did:key:z6Mk")
    did_owner = DID.search(owner_page.get_by_test_id("my-identity").text_content()).group()
    url = server.create(3, "--program", "sum", "--labels", "hospital A", "hospital B",
                        "hospital C", "--pin", f"hospital B={did_owner}")
    stranger = BrowserParty(new_page(), url, wait_joined=False)
    expect(stranger["status"]).to_have_text("Choose your place")
    expect(stranger["place-1"]).to_be_disabled()
    expect(stranger["place-1"]).to_have_attribute("title", "Kept for another person's key")
    expect(stranger["place-0"]).to_be_enabled()
    owner = BrowserParty(owner_page, url, wait_joined=False)
    expect(owner["place-1"]).to_have_text("hospital B (kept for you)")
    owner["place-1"].click()
    assert owner.wait_joined() == 1
    expect(owner["log"]).to_contain_text("the session is as its creator chose it")
    expect(owner["status"]).not_to_have_text("Tampering detected")


def test_a_browser_remembers_the_keys_it_computed_with(server, new_page):
    """A second session in the same browsers (the same IndexedDB): the page says it computed
    with that key before, under which name, and flags a new key that takes a name it knows
    for another key."""
    url = server.create(2, "--program-file", str(TOTAL), "--no-privacy")
    alice = BrowserParty(new_page(), url)
    bob = BrowserParty(new_page(), url)
    did_alice, _ = own_identity(alice)
    did_bob, print_bob = own_identity(bob)
    confirm_as(alice, "Alice", "1", accept_no_privacy=True)
    confirm_as(bob, "Bob", "2", accept_no_privacy=True)
    assert alice.wait_done().strip() == bob.wait_done().strip() == "total = 3"
    expect(alice["identity-1"]).to_contain_text(f"party 2: Bob, {did_bob} (verified)")
    expect(alice["identity-1"]).to_contain_text("new key")
    expect(bob["identity-0"]).to_contain_text("new key")

    # Session 2: the same two browsers (new tabs of the same profiles) and a newcomer who
    # calls itself Bob too.
    url = server.create(3, "--program-file", str(TOTAL))
    alice = BrowserParty(alice.page.context.new_page(), url)
    bob = BrowserParty(bob.page.context.new_page(), url)
    newcomer = BrowserParty(new_page(), url)
    assert own_identity(alice)[0] == did_alice  # the key is kept
    assert own_identity(bob)[0] == did_bob
    confirm_as(alice, "Alice", "1")
    confirm_as(bob, "Bob", "2")
    confirm_as(newcomer, "bob", "3")
    for party in (alice, bob, newcomer):
        assert party.wait_done().strip() == "total = 6"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    expect(alice["identity-1"]).to_contain_text(
        f"you computed with this key before, as 'Bob' (once, last on {day})")
    expect(bob["identity-0"]).to_contain_text(
        f"you computed with this key before, as 'Alice' (once, last on {day})")
    flag = alice["identity-2"].locator("[data-known]")
    expect(flag).to_have_attribute("data-known", "name_reused")
    expect(flag).to_have_text(
        f"Careful: you computed with someone called 'bob' before, with another key "
        f"({print_bob}). This is a new key.")
    expect(newcomer["identity-0"]).to_contain_text("new key")
    fits_a_phone(alice.page, "identities-known")


#: A browser whose WebCrypto has no Ed25519 (as Safari before 17, Chrome before 137).
NO_ED25519 = """
const generateKey = SubtleCrypto.prototype.generateKey;
SubtleCrypto.prototype.generateKey = function (algorithm, ...rest) {
  const name = typeof algorithm === 'string' ? algorithm : algorithm && algorithm.name;
  if (String(name).toLowerCase() === 'ed25519') {
    return Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError'));
  }
  return generateKey.call(this, algorithm, ...rest);
};
"""


def test_a_browser_without_ed25519_says_it_cannot_take_part(server, new_page):
    url = server.create(3, "--program", "sum")
    page = new_page()
    page.add_init_script(NO_ED25519)
    party = BrowserParty(page, url, wait_joined=False)
    expect(party["status"]).to_have_text("Cannot take part here")
    expect(party["error"]).to_contain_text("its WebCrypto lacks Ed25519 signatures")
    expect(party["error"]).to_contain_text("mpyc-webrtc-peer join 'LINK'")
    expect(party["me"]).to_be_hidden()
    expect(party["my-identity"]).to_be_hidden()
    assert server.info(url)["joined"] == 0  # it took no place


def _did(seed: int) -> str:
    return Identity.from_seed(bytes([seed]) * 32).did


#: Records and who comes along: (records, did, name), as known.recognise takes them.
KNOWN_CASES = [
    ({}, _did(1), "Alice"),
    ({}, _did(1), ""),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 1}}, _did(1), "Alice"),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 2}}, _did(1), "  alice "),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 7}}, _did(1), ""),
    ({_did(1): {"name": "", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 1}}, _did(1), "Alice"),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 3}}, _did(1), "Mallory"),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 3}}, _did(2), "ALICE"),
    ({_did(1): {"name": "Alice", "first": "2026-12-01T10:00:00Z",
                "last": "2026-12-05T10:00:00Z", "count": 3}}, _did(2), "Bob"),
]


def test_the_page_judges_known_keys_as_the_native_peer_does(server, new_page):
    """web/identity.js's knownVerdict, the twin of mpyc_webrtc/known.py's recognise: the
    same sentence key and fields for the same records."""
    page = new_page()
    page.goto(f"{server.url}/")
    for records, did, name in KNOWN_CASES:
        verdict = page.evaluate("""async ([records, did, name]) => {
            const identity = await import('/web/identity.js');
            const v = identity.knownVerdict(new Map(Object.entries(records)), did, name);
            if (v.other) {
                v.fields.fingerprint = await identity.fingerprint(identity.publicKey(v.other));
            }
            return ['known.' + v.kind, v.fields];
        }""", [records, did, name])
        assert tuple(verdict) == known.recognise(records, did, name), (records, did, name)


def test_firefox_keeps_its_key_verifies_chromium_and_chats(server, new_firefox_page, new_page):
    """Firefox ESR keeps its key in IndexedDB (the same in a second tab), signs and checks
    as Chromium does, and chats with it in the lobby and over the chat channel after the
    result."""
    url = server.create(2, "--program-file", str(TOTAL), "--no-privacy")
    fox = BrowserParty(new_firefox_page(), url)
    did_fox, _ = own_identity(fox)
    again = fox.page.context.new_page()
    again.goto(f"{server.url}/")
    expect(again.get_by_test_id("my-identity")).to_contain_text(did_fox)
    again.close()
    chromium = BrowserParty(new_page(), url)
    did_chromium, _ = own_identity(chromium)
    expect(fox["peer-1"]).to_have_attribute("data-state", "joined")
    fox["chat-input"].fill("hello from Firefox")
    fox["chat-send"].click()
    expect(chromium["chat-log"]).to_contain_text("hello from Firefox")
    confirm_as(fox, "Fox", "4", accept_no_privacy=True)
    confirm_as(chromium, "Chrome", "5", accept_no_privacy=True)
    assert fox.wait_done().strip() == chromium.wait_done().strip() == "total = 9"
    expect(fox["identity-1"]).to_contain_text(f"party 2: Chrome, {did_chromium} (verified)")
    expect(chromium["identity-0"]).to_contain_text(f"party 1: Fox, {did_fox} (verified)")
    chromium["chat-input"].fill("and back over the chat channel")
    chromium["chat-input"].press("Enter")
    received = fox["chat-log"].get_by_test_id("chat-message").filter(has_text="chat channel")
    expect(received).to_have_attribute("data-bound", "true")
    expect(chromium["log"]).to_contain_text("chat message 1 to party 0 over the data channel")


def test_a_key_kept_by_the_first_version_of_the_store_is_kept(server, new_page):
    """A browser that kept its key before known identities existed (database version 1,
    the ``identity`` store only) keeps that very key when the store gains ``known``."""
    page = new_page()
    page.goto(f"{server.url}/api/protocol")
    did = page.evaluate("""async () => {
        const { Identity } = await import('/web/identity.js');
        const db = await new Promise((resolve, reject) => {
            const request = indexedDB.open('mpyc-webrtc', 1);
            request.onupgradeneeded = () => request.result.createObjectStore('identity');
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
        });
        const identity = await Identity.generate();
        await new Promise((resolve, reject) => {
            const put = db.transaction('identity', 'readwrite').objectStore('identity')
                .put(identity.keys, 'self');
            put.onsuccess = resolve;
            put.onerror = () => reject(put.error);
        });
        db.close();
        return identity.did;
    }""")
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("my-identity")).to_contain_text(f"You are {did} ")
    stores = page.evaluate("""() => new Promise((resolve) => {
        const request = indexedDB.open('mpyc-webrtc');
        request.onsuccess = () => {
            const db = request.result;
            resolve([db.version, [...db.objectStoreNames].sort()]);
            db.close();
        };
    })""")
    assert stores == [2, ["identity", "known"]]
