"""Accessibility of the pages, as people with screen readers, keyboards or low vision meet them.

- axe-core (npm, pinned in package.json; never a CDN) runs on the create page (with the
  program's code and the editor shown), the lobby with every party joined (roster,
  identities, chat), the result (with a table, too) and the pages that end early (incomplete
  link, session full), at desktop (1280x800) and phone (390x844) size: no serious or critical
  violation, touch targets (WCAG 2.2's target size, which axe leaves off by default)
  included. Each one found is listed with its rule, help text and elements. The create
  page, the lobby and the result are checked in Firefox ESR too.
- Contrast that axe does not judge: a disabled button ("Loading Python…") and every roster
  and connection badge the stylesheet colours, each at least WCAG AA's 4.5:1.
- The keyboard: every control is reached by Tab, shows where the focus is, and works with
  Enter or Space, from the create page to the result.

How axe gets into the page: the pages' Content-Security-Policy allows only the server's own
scripts, and the server does not serve axe (a test tool, not part of the product). Playwright
evaluates axe's source through the DevTools protocol, which the page's CSP does not govern, so
the pages run under the same policy as for everyone (``bypass_csp`` would also lift the
policy's ``style-src``, and so could change what axe sees).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from testbed.browser import BrowserParty, fill_session, open_parties
from testbed.netns import start_peer

ROOT = Path(__file__).parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
STYLE = ROOT / "web" / "style.css"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SIZES = (("desktop", DESKTOP), ("phone", PHONE))
#: What fails the check: axe's two highest impacts (of minor, moderate, serious, critical).
FAILING = ("serious", "critical")


def axe(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (it is loaded once per document)."""
    assert AXE.exists(), "axe-core is an npm dev dependency in package.json (./run.sh installs it)"
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text() + "\n;undefined")
    return page.evaluate("""async () => {
        // target-size (WCAG 2.2 AA: 24 px, or room around) is off by default in axe.
        const results = await axe.run(document, {
            resultTypes: ['violations'], rules: {'target-size': {enabled: true}}});
        return results.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => ({target: n.target.join(' '), summary: n.failureSummary})),
        }));
    }""")


def check_axe(page: Page, where: str) -> None:
    """No serious or critical violation at either size; each one found is described."""
    problems = []
    for label, size in SIZES:
        page.set_viewport_size(size)
        for violation in axe(page):
            if violation["impact"] in FAILING:
                nodes = "\n".join(f"      {n['target']}: {n['summary']}"
                                  for n in violation["nodes"])
                problems.append(f"  [{label}] {violation['id']} ({violation['impact']}): "
                                f"{violation['help']}\n{nodes}")
    page.set_viewport_size(DESKTOP)
    assert not problems, f"axe on {where}:\n" + "\n".join(problems)


# --- contrast ------------------------------------------------------------------------------

#: Reads an element's text colour and the background it is drawn on (its own, else the first
#: opaque one among its ancestors), as the browser computed them.
COLOURS = """(element) => {
    const style = getComputedStyle(element);
    let background = 'rgba(0, 0, 0, 0)';
    for (let e = element; e && e.nodeType === 1; e = e.parentElement) {
        const b = getComputedStyle(e).backgroundColor;
        if (!/rgba\\(.*, 0\\)$/.test(b) && b !== 'transparent') { background = b; break; }
    }
    return {color: style.color, background: background === 'rgba(0, 0, 0, 0)'
        ? 'rgb(255, 255, 255)' : background};
}"""


def _rgb(css: str) -> tuple[float, float, float]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)[:3]]
    assert len(values) == 3, css
    return values[0], values[1], values[2]


def contrast(color: str, background: str) -> float:
    """WCAG 2's contrast ratio of two opaque CSS ``rgb(...)`` colours."""
    def luminance(css: str) -> float:
        channels = [c / 255 for c in _rgb(css)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
                   for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(color), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_helper_matches_wcag():
    """The ratio as WCAG defines it (values from the definition: black/white is 21:1),
    and the issue's measurement of the old disabled button (white on #9aa7bd)."""
    assert round(contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)"), 2) == 21.0
    assert round(contrast("rgb(255, 255, 255)", "rgb(154, 167, 189)"), 2) == 2.43


def badge_states() -> list[str]:
    """Every ``data-state`` the stylesheet gives a colour, and one it does not (the default)."""
    return sorted(set(re.findall(r'data-state="(\w+)"', STYLE.read_text()))) + ["waiting"]


def badge_contrasts(page: Page) -> dict[str, float]:
    """The contrast of each badge state, drawn by the page's own stylesheet in the page's own
    roster and connection list (rows added, measured and removed in one task)."""
    measured = page.evaluate("""(states) => {
        const read = """ + COLOURS + """;
        const out = {};
        for (const list of ['roster', 'pairs']) {
            const host = document.querySelector(`[data-testid=${list}]`);
            const saved = host.closest('[hidden]');
            if (saved) saved.hidden = false;
            for (const state of states) {
                const row = document.createElement('li');
                row.dataset.state = state;
                const badge = document.createElement('span');
                badge.className = 'state';
                badge.textContent = state;
                row.append(badge);
                host.append(row);
                out[`${list} ${state}`] = read(badge);
                row.remove();
            }
            if (saved) saved.hidden = true;
        }
        return out;
    }""", badge_states())
    return {name: contrast(c["color"], c["background"]) for name, c in measured.items()}


def disabled_button_contrast(page: Page, testid: str, text: str) -> float:
    """The contrast of button ``testid`` as it looks disabled, saying ``text``: a copy of it,
    in its place, so the page's own rules apply."""
    colours = page.get_by_test_id(testid).evaluate("""(button, text) => {
        const copy = button.cloneNode(false);
        copy.removeAttribute('data-testid');
        copy.hidden = false;
        copy.disabled = true;
        copy.textContent = text;
        button.after(copy);
        const seen = (""" + COLOURS + """)(copy);
        copy.remove();
        return seen;
    }""", text)
    return contrast(colours["color"], colours["background"])


# --- keyboard -------------------------------------------------------------------------------

#: The controls a keyboard must reach: visible, enabled, not taken out of the tab order.
#: Radio buttons count once per group (Tab goes to the checked one; arrows move within).
CONTROLS = """() => {
    const selector = 'a[href], button, input, select, textarea, summary, [tabindex],'
        + '[contenteditable]:not([contenteditable="false"])';
    const seen = new Set();
    const out = [];
    for (const e of document.querySelectorAll(selector)) {
        if (e.disabled || e.getAttribute('tabindex') === '-1') continue;
        if (!e.checkVisibility({visibilityProperty: true})) continue;
        if (e.type === 'radio') {
            if (seen.has(e.name)) continue;
            seen.add(e.name);
        }
        out.push(e);
    }
    return out;
}"""

DESCRIBE = """(e) => e ? (e.dataset.testid || e.id || e.getAttribute('aria-label')
    || (e.tagName + ':' + (e.textContent || '').trim().slice(0, 40))) : 'nothing'"""

#: How the focused element shows it has the focus: an outline or a box shadow.
FOCUS_SHOWN = """() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
    return outline || style.boxShadow !== 'none';
}"""


def tab_through(page: Page) -> list[str]:
    """Tab once round the page (past its end, Tab starts again at the top) until the focus is
    back where it began; returns what it reached (radio groups as their checked radio),
    checking that each shows the focus."""
    reached: list[str] = []
    for _ in range(200):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            continue  # between the page's end and its top
        name = page.evaluate(f"({DESCRIBE})(document.activeElement)")
        if reached and name == reached[0]:
            return reached
        assert page.evaluate(FOCUS_SHOWN), f"the focus on {name} is not visible"
        reached.append(name)
    raise AssertionError(f"Tab did not come round the page: {reached}")


def check_tab_order(page: Page, where: str) -> None:
    """Every control is reached by Tab, and each shows the focus."""
    expected = page.evaluate(f"() => ({CONTROLS})().map({DESCRIBE})")
    reached = tab_through(page)
    missing = [name for name in expected if name not in reached]
    assert not missing, f"{where}: Tab never reaches {missing} (reached {reached})"


def tab_to(page: Page, target: str) -> None:
    """Press Tab until the control ``target`` (a data-testid, or a CSS selector) has the
    focus: it must be reachable, and show the focus."""
    selector = target if re.search(r"[ .\[]", target) else f"[data-testid={target}]"
    for _ in range(200):
        if page.evaluate("(s) => document.activeElement?.matches(s)", selector):
            assert page.evaluate(FOCUS_SHOWN), f"the focus on {target} is not visible"
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reaches {target}")


# --- the tests -------------------------------------------------------------------------------


def test_axe_finds_touch_targets_too_small(server, new_page):
    """The check would catch a control too small to tap: two 12 px buttons side by side,
    added to the create page, are a target-size violation (and nothing else here is)."""
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("create")).to_be_enabled()
    assert "target-size" not in [v["id"] for v in axe(page)]
    page.evaluate("""() => {
        for (const text of ['a', 'b']) {
            const button = document.createElement('button');
            button.textContent = text;
            button.style.cssText = 'width:12px;height:12px;padding:0;margin:0;min-height:0;'
                + 'min-width:0;font-size:8px;line-height:1;border:0';
            document.querySelector('main').prepend(button);
        }
    }""")
    assert "target-size" in [v["id"] for v in axe(page)]


def test_create_page_passes_axe_and_contrast(server, new_page):
    page = new_page()
    page.set_viewport_size(DESKTOP)
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("create")).to_be_enabled()
    check_axe(page, "the create page")
    # The program's code, highlighted, and the editor of an own program.
    page.get_by_text("Show the program's code").click()
    expect(page.get_by_test_id("program-preview")).to_contain_text("mpc")
    check_axe(page, "the create page showing the program's code")
    page.get_by_test_id("program-choice-own").check()
    expect(page.get_by_test_id("source-editor")).to_contain_text("from mpyc.runtime import mpc")
    check_axe(page, "the create page with the editor")
    ratio = disabled_button_contrast(page, "create", "Create the session")
    assert ratio >= 4.5, f"disabled Create button: {ratio:.2f}:1"
    # The check can fail: an unlabelled field and pale text, added to the page, are found.
    page.evaluate("""() => {
        const probe = document.createElement('div');
        probe.id = 'probe';
        const field = document.createElement('input');
        const pale = document.createElement('p');
        pale.textContent = 'Pale text';
        pale.style.color = '#aaaaaa';
        probe.append(field, pale);
        document.querySelector('main').append(probe);
    }""")
    found = {(v["id"], v["impact"], n["target"]) for v in axe(page) for n in v["nodes"]}
    assert {("label", "critical", "#probe > input"),
            ("color-contrast", "serious", "#probe > p")} <= found, found


def test_lobby_and_result_pass_axe_and_badges_are_readable(server, new_page):
    creator_page = new_page()
    creator_page.set_viewport_size(DESKTOP)
    creator_page.goto(f"{server.url}/")
    creator_page.get_by_test_id("parties-count").fill("3")
    for pid, label in enumerate(["Alice", "Bob", "Carol"]):
        creator_page.get_by_test_id(f"label-{pid}").fill(label)
    creator_page.get_by_test_id("create").click()
    invite = creator_page.get_by_test_id("invite-link")
    expect(invite).to_have_value(re.compile(r"/join/"))
    creator = BrowserParty(creator_page, creator_page.url)
    # The button: "Loading Python…" while Python loads, readable while disabled.
    ratio = disabled_button_contrast(creator_page, "ready", "Loading Python…")
    assert ratio >= 4.5, f'disabled "Loading Python…" button: {ratio:.2f}:1'

    second_page = new_page()
    second = BrowserParty(second_page, invite.input_value(), wait_joined=False)
    second_page.get_by_test_id("place-1").click()
    second.wait_joined()
    third_page = new_page()
    third = BrowserParty(third_page, invite.input_value(), wait_joined=False)
    third_page.get_by_test_id("place-2").click()
    third.wait_joined()
    # The lobby as people see it: everyone here, their keys, a chat message.
    expect(creator["roster-summary"]).to_contain_text("3 of 3 here")
    expect(creator["identity-1"]).to_be_visible()
    expect(creator["identity-2"]).to_be_visible()
    expect(creator["fingerprint-check"]).to_contain_text("matches the link", timeout=90_000)
    expect(creator["chat"]).to_be_visible()
    second["chat-input"].fill("Hello from Bob")
    second["chat-input"].press("Enter")
    expect(creator["chat-log"]).to_contain_text("Hello from Bob")
    check_axe(creator_page, "the lobby (creator)")
    check_axe(second_page, "the lobby (a party who joined)")

    weak = {name: ratio for name, ratio in badge_contrasts(creator_page).items() if ratio < 4.5}
    assert not weak, f"badges below 4.5:1: {weak}"

    for party, salary in ((creator, "52000"), (second, "61500"), (third, "38250")):
        party.confirm(salary)
    for party in (creator, second, third):
        party.wait_done()
        assert party.headline() == "The average salary is 50,583.33."
    check_axe(creator_page, "the result (creator)")
    check_axe(third_page, "the result (a party who joined)")


def test_pages_that_end_early_pass_axe(server, new_page):
    """Where a person cannot take part: a link without its secret, a session already full."""
    url = server.create(3, "--program", "sum")
    incomplete = BrowserParty(new_page(), url.split("#")[0], wait_joined=False)
    expect(incomplete["status"]).to_have_text("Incomplete link")
    check_axe(incomplete.page, "the Incomplete link page")
    fill_session(new_page(), server.url, url, 3)
    late = BrowserParty(new_page(), url, wait_joined=False)
    expect(late["status"]).to_have_text("Session full")
    check_axe(late.page, "the Session full page")


def test_keyboard_alone_from_the_create_page_to_the_result(server, new_page):
    """A person without a mouse, on a phone-sized screen: every control is reached by Tab and
    shows the focus; Enter and Space do what a click does. A median, so the result has a table
    long enough to scroll (it must be reachable too)."""
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("create")).to_be_enabled()
    tab_to(page, "[data-testid=program-preview-box] summary")
    page.keyboard.press("Enter")  # the program's code: reachable too, once shown
    expect(page.get_by_test_id("program-preview-box")).to_have_attribute("open", "")
    check_tab_order(page, "the create page")
    # The choices by keyboard: the program (arrows in the radio group), the count, then
    # Create with Enter.
    tab_to(page, "program-choice-average")
    for _ in range(20):
        if page.get_by_test_id("program-choice-median").is_checked():
            break
        page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("program-choice-median")).to_be_checked()
    expect(page.get_by_test_id("program-choice-median")).to_be_focused()
    tab_to(page, "parties-count")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    tab_to(page, "create")
    page.keyboard.press("Enter")
    invite = page.get_by_test_id("invite-link")
    expect(invite).to_have_value(re.compile(r"/join/"))
    me = BrowserParty(page, page.url)
    others = open_parties(new_page, invite.input_value(), 2)
    expect(me["roster-summary"]).to_contain_text("3 of 3 here")
    me.wait_python()
    expect(me["chat"]).to_be_visible()
    check_tab_order(page, "the lobby")
    # The invite card folded once every place was taken: Enter on its summary opens it,
    # then the invite link is copied with Enter on Copy.
    expect(me["invite-details"]).to_have_js_property("open", False)
    tab_to(page, "[data-testid=invite-details] summary")
    page.keyboard.press("Enter")
    expect(me["invite-details"]).to_have_js_property("open", True)
    tab_to(page, "copy-link")
    page.keyboard.press("Enter")
    expect(me["copy-result"]).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == invite.input_value()

    # A chat message with Enter, the program's code opened with Enter on its summary.
    tab_to(page, "chat-input")
    page.keyboard.type("Ready when you are")
    page.keyboard.press("Enter")
    expect(me["chat-log"]).to_contain_text("Ready when you are")
    tab_to(page, "details.code-view summary")
    page.keyboard.press("Enter")
    expect(page.locator("details.code-view")).to_have_attribute("open", "")
    # The input, then "I'm ready" with Space.
    tab_to(page, "party-input")
    page.keyboard.type("5,3,9,1")
    tab_to(page, "ready")
    page.keyboard.press("Space")
    expect(me[f"peer-{me.pid}"]).to_have_attribute("data-state", "ready")
    others[0].confirm("10,2,8,4")
    others[1].confirm("7,6,12,11")
    me.wait_done()
    assert me.headline() == "The median is 6.5."
    table = page.locator(".table-box")
    assert table.evaluate("(box) => box.scrollHeight > box.clientHeight"), "the table scrolls"
    check_tab_order(page, "the result")
    check_axe(page, "the result with a table")


def test_the_code_editor_indents_with_tab_and_lets_the_keyboard_leave(server, new_page):
    """Tab indents in the editor of an own program; Esc then Tab moves on (no keyboard trap)."""
    page = new_page()
    page.goto(f"{server.url}/")
    page.get_by_test_id("program-choice-own").check()
    editor = page.get_by_test_id("source-editor")
    expect(editor).to_contain_text("from mpyc.runtime import mpc")
    expect(page.locator("#editor-keys")).to_have_text(
        "Tab indents; to leave the editor with the keyboard, press Esc, then Tab.")
    # The editor highlights the code again shortly after each key, and puts its caret (and so
    # the focus) back in the editor: wait for that after the last key, as a person's pause.
    editor.evaluate("""(editor) => {
        window.highlighted = false;
        document.addEventListener('keyup', (e) => {
            if (e.key === 'x') window.highlighted = false;
        }, true);
        new MutationObserver((records) => {
            if (records.some((r) => r.removedNodes.length > 1)) window.highlighted = true;
        }).observe(editor, {childList: true});
    }""")
    tab_to(page, "source-editor")
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.type("x")
    assert "mpc.run(mpc.shutdown())\n    x" in editor.text_content()
    page.wait_for_function("() => window.highlighted")  # a function: the page forbids eval
    assert page.evaluate("document.activeElement.dataset.testid") == "source-editor"
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "parties-count"
    assert "mpc.run(mpc.shutdown())\n    x\n" in editor.text_content()  # Tab added nothing
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "source-editor"
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.dataset.testid") != "source-editor"


def test_in_firefox_the_create_page_lobby_and_result_pass_axe(server, new_firefox_page):
    """The same check in Firefox ESR (its own rendering, fonts and form controls): the
    create page, the lobby and the result of a session with two native peers."""
    page = new_firefox_page()
    page.set_viewport_size(DESKTOP)
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("create")).to_be_enabled()
    check_axe(page, "the create page in Firefox")
    url = server.create(3, "--program", "sum")
    fox = BrowserParty(new_firefox_page(), url)
    assert fox.pid == 0
    natives = []
    for pid, value in ((1, "7"), (2, "30")):
        natives.append(start_peer(server.ns, url, "--input", value))
        server.wait_joined(url, pid + 1)
    expect(fox["roster-summary"]).to_contain_text("3 of 3 here")
    check_axe(fox.page, "the lobby in Firefox")
    fox.confirm("5")
    assert fox.wait_done().strip() == "sum = 42"
    for native in natives:
        native.communicate(timeout=60)
        assert native.returncode == 0
    check_axe(fox.page, "the result in Firefox")
