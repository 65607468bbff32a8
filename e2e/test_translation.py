"""A translation is only another table (issue 18, point 11): served another table of
sentences, the create page and the lobby say everything in its words, the static text of
the HTML and the sentences the modules compose alike. The table here is a pseudo-locale,
every sentence of mpyc_webrtc/sentences.py in [brackets], so a word that did not come from
it stands out. How the server picks a translation file is tests/test_sentence_catalogue.py.
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from mpyc_webrtc.sentences import SENTENCES, say
from testbed.browser import by_id

PHONE = {"width": 390, "height": 844}


def bracketed() -> dict[str, str]:
    table = {key: f"[{text}]" for key, text in SENTENCES.items()}
    table["page.lang"] = "xx"
    return table


def test_the_pages_speak_the_table_they_are_given(server, new_page):
    table = bracketed()
    asked: list[str] = []

    def serve(route):
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(table))

    page = new_page()
    page.set_viewport_size(PHONE)
    page.route("**/api/sentences*", serve)
    page.goto(f"{server.url}/?lang=xx")
    # The create page: its static text, and a sentence its module composes.
    expect(page.locator("h1")).to_have_text("[Compute together, keep your inputs private]")
    expect(page.locator("html")).to_have_attribute("lang", "xx")
    expect(by_id(page, "create")).to_have_text("[Create the session]")
    expect(by_id(page, "parties-help")).to_have_text(
        "[" + say("create.count_help", min=2, max=32) + "]")
    expect(by_id(page, "program-choice-own").locator("xpath=..")).to_contain_text(
        "[Your own MPyC program]")
    expect(by_id(page, "label-0")).to_have_attribute("placeholder", "[Party 1]")
    by_id(page, "program-choice-average").check()
    by_id(page, "create").click()

    # The lobby (the language chosen with ?lang= is kept for it): static text, a status line.
    expect(page).to_have_url(re.compile(r"/join/[^?]+\?role=0$"))
    expect(by_id(page, "status")).to_have_text(
        "[" + SENTENCES["status.waiting_join.other"].replace("{count}", "2") + "]")
    expect(page.locator("#roster-title")).to_have_text("[Parties]")
    expect(page.locator("#program-title")).to_have_text("[The program]")
    expect(by_id(page, "invite-title")).to_have_text("[Invite the others]")
    expect(by_id(page, "invite-link")).to_have_attribute("aria-label", "[Invite link]")
    expect(page.locator("p.crumb a")).to_have_text("[Start a new session]")
    expect(page.locator("#how-secret summary")).to_have_text(
        "[How does this keep my input secret?]")
    # A sentence with children in it keeps them where the table puts them.
    expect(page.locator("p.fingerprint")).to_contain_text("[Fingerprint: ")
    expect(by_id(page, "fingerprint")).to_have_text(re.compile(r"^\w{4}( \w{4}){4}$"))
    expect(by_id(page, "ready")).to_have_text(
        re.compile(r"^\[(Loading Python…|I'm ready)\]$"))
    assert page.title() == "[Secure computation lobby]"
    assert len(asked) == 2 and all("lang=xx" in url for url in asked)
