"""The pages in real Chromium (Debian's, through Playwright) against `taskerino serve` on
loopback, with sessions recorded from `test:` sources on Xvfb. The screenshots of the
three pages in docs/screenshots/ are taken here."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from taskerino.virtual import VirtualDisplay

from .web_helpers import Served

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SEEK_TOLERANCE = 0.25

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, xdisplay: VirtualDisplay) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("browser-home"), "--port", "0")
    yield served
    status, _, err = served.stop()
    assert status == 0, err


@pytest.fixture(scope="module")
def recorded(server: Served) -> dict[str, dict[str, Any]]:
    """Three short sessions recorded at once by the server, and a note."""
    video = {"video": True, "fps": 10, "size": "640x360"}
    asked = {
        "hunt": {
            "name": "Invoice retry hunt",
            "tags": ["billing"],
            "screenshot_interval": 1,
            "sources": ["test:blue"],
            "duration": 4,
            **video,
        },
        "deploy": {
            "name": "Deploy logs",
            "tags": ["ops"],
            "screenshots": False,
            "sources": ["test:green"],
            "duration": 2,
            **video,
        },
        "standup": {"name": "Standup", "tags": ["team"], "screenshot_interval": 1, "duration": 2},
    }
    ids = {key: server.api("POST", "/api/sessions", body)["id"] for key, body in asked.items()}
    done = {key: server.wait_completed(sid) for key, sid in ids.items()}
    note = {"content": "retry loop starts here", "media_offset": 1.5}
    server.api("POST", f"/api/sessions/{ids['hunt']}/notes", note)
    done["hunt"] = server.api("GET", f"/api/sessions/{ids['hunt']}")
    return done


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(f"{server.base}/?token={server.token}")  # the login URL
    assert tab.url == f"{server.base}/"  # the token is gone from the address
    yield tab
    context.close()
    assert errors == []


def wait_until(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Poll a JavaScript expression until it is true (Playwright's wait_for_function
    evaluates strings with eval, which the pages' Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true within {timeout} s: {expression}"
        time.sleep(0.05)


def current_time(page: Page) -> float:
    return float(page.evaluate("document.getElementById('player').currentTime"))


def open_session(page: Page, server: Served, session_id: str, query: str = "") -> None:
    page.goto(f"{server.base}/sessions/{session_id}{query}")
    expect(page.locator("#session")).to_have_attribute("data-ready", "true")
    wait_until(page, "document.getElementById('player').readyState >= 1")


def test_the_list_shows_recorded_sessions_and_filters_them(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    page.goto(f"{server.base}/")
    rows = page.locator("#sessions tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#count")).to_have_text("1–3 of 3 sessions")
    expect(rows.first.locator("img")).to_be_visible()  # a thumbnail (the newest has shots)
    page.screenshot(path=str(DOCS / "sessions.png"))

    page.fill("input[name=q]", "invoice")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=invoice*")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Invoice retry hunt")

    page.goto(f"{server.base}/?tag=ops")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Deploy logs")
    page.select_option("select[name=status]", "active,paused")  # submits on change
    page.wait_for_url("**status=active%2Cpaused*")
    expect(page.locator("#count")).to_have_text("No sessions match.")

    page.goto(f"{server.base}/?sort=oldest&limit=1&offset=1")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Deploy logs")
    page.click("a[rel=next]")
    expect(rows.first).to_contain_text("Standup")


def test_the_session_page_plays_and_seeks(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    hunt = recorded["hunt"]
    open_session(page, server, hunt["id"])
    page.keyboard.press("Space")  # plays
    wait_until(page, "document.getElementById('player').currentTime > 0.5")
    page.keyboard.press("Space")  # pauses
    assert page.evaluate("document.getElementById('player').paused") is True

    shot = page.locator("#shots .shot").nth(2)
    offset = float(shot.get_attribute("data-media-offset") or "nan")
    assert offset == pytest.approx(hunt["screenshots"][2]["media_offset"])
    shot.locator(".seek").click()
    assert abs(current_time(page) - offset) <= SEEK_TOLERANCE
    expect(shot).to_have_class("item shot current")

    note = page.locator("#notes .note", has_text="retry loop starts here")
    note.click()
    assert abs(current_time(page) - 1.5) <= SEEK_TOLERANCE
    expect(note).to_have_class("item note current")

    marker = page.locator("#rows .kind-shot").nth(1)  # a timeline item seeks too
    marker.click()
    wanted = float(marker.get_attribute("data-media-offset") or "nan")
    assert abs(current_time(page) - wanted) <= SEEK_TOLERANCE

    # Every timeline and list item carries its offset.
    missing = page.evaluate(
        "[...document.querySelectorAll('.item')].filter(e => !e.dataset.mediaOffset).length"
    )
    assert missing == 0

    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()


def test_a_note_added_on_the_page_is_stored_at_the_playhead(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    hunt = recorded["hunt"]
    open_session(page, server, hunt["id"], "?t=2.2")  # a deep link
    wait_until(page, "Math.abs(document.getElementById('player').currentTime - 2.2) < 0.05")
    page.keyboard.press("n")
    expect(page.locator("#note-text")).to_be_focused()
    page.keyboard.type("the total is wrong here")
    page.keyboard.press("Enter")
    item = page.locator("#notes .note", has_text="the total is wrong here")
    expect(item).to_be_visible()
    stored = server.api("GET", f"/api/sessions/{hunt['id']}")["context_items"]
    note = next(n for n in stored if n["content"] == "the total is wrong here")
    assert abs(note["media_offset"] - 2.2) <= SEEK_TOLERANCE
    assert float(item.get_attribute("data-media-offset") or "nan") == note["media_offset"]
    expect(
        page.locator(f'#rows .kind-note[data-media-offset="{note["media_offset"]}"]')
    ).to_have_count(1)

    shot = page.locator("#shots .shot").first
    shot.locator(".seek").click()
    page.keyboard.press("f")  # flags the screenshot under the playhead
    expect(shot.locator(".flag")).to_have_attribute("aria-pressed", "true")
    shot.locator(".comment input").fill("first picture")
    shot.locator(".comment input").press("Enter")
    expect(shot.locator(".comment input")).to_have_class("saved")
    stored_shot = server.api("GET", f"/api/sessions/{hunt['id']}")["screenshots"][0]
    assert stored_shot["flagged"] is True and stored_shot["user_comment"] == "first picture"
    page.fill("#find", "total")
    expect(page.locator("#hits .hit")).to_have_count(1)
    page.keyboard.press("Escape")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(DOCS / "session.png"), full_page=True)


def test_a_session_recorded_from_the_page(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    page.goto(f"{server.base}/record")
    expect(page.locator("#sources .card")).to_have_count(6)  # 2 displays, 4 test patterns
    page.click("summary")  # the test patterns
    for source in ("display:1", "display:2", "test:blue", "test:green"):
        page.click(f'.card[data-source="{source}"]')
    expect(page.locator('.card[data-source="test:green"] .order')).to_have_text("4")
    fifth = page.locator('.card[data-source="test:red"]')
    expect(fifth).to_have_attribute("aria-disabled", "true")  # offered as not selectable
    fifth.click(force=True)  # tried all the same
    expect(page.locator("#sources-error")).to_contain_text("At most 4")
    expect(page.locator('.card[data-source="test:red"]')).to_have_attribute("aria-pressed", "false")
    for source in ("display:1", "display:2", "test:blue", "test:green"):
        page.click(f'.card[data-source="{source}"]')
    page.click('.card[data-source="test:red"]')
    page.fill("input[name=fps]", "10")
    page.select_option("select[name=size]", "960x540")
    page.fill("input[name=screenshot_interval]", "1")
    page.fill("input[name=name]", "Recorded from the page")
    page.click("#start")

    expect(page.locator("#st-conn")).to_have_text("live", timeout=15_000)
    expect(page.locator("#st-state")).to_have_text("active")
    captured = page.locator("#st-captured")
    expect(captured).not_to_have_text("–")
    first = int(captured.inner_text())
    wait_until(page, f"+document.getElementById('st-captured').textContent > {first}")
    expect(page.locator("#st-target")).to_have_text("10")
    assert "health-" in (page.locator("#st-drop-rate").get_attribute("class") or "")
    expect(page.locator("#st-disk")).not_to_have_text("–")
    page.click("#pause")
    expect(page.locator("#st-state")).to_have_text("paused")
    page.click("#resume")
    expect(page.locator("#st-state")).to_have_text("active")
    time.sleep(1.0)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(DOCS / "record.png"))
    session_id = page.locator("#stats").get_attribute("data-session")
    page.click("#end")
    expect(page.locator("#st-conn")).to_have_text("stopped", timeout=30_000)
    expect(page.locator("#st-state")).to_have_text("completed")

    ended = server.api("GET", f"/api/sessions/{session_id}")
    assert ended["status"] == "completed" and ended["video"]["full_video_attachment_id"]
    assert ended["config"]["sources"] == ["test:red"] and ended["config"]["fps"] == 10
    page.click("#st-name")
    expect(page.locator("#session")).to_have_attribute("data-ready", "true")
    wait_until(page, "document.getElementById('player').readyState >= 1")
    page.keyboard.press("Space")
    wait_until(page, "document.getElementById('player').currentTime > 0.5")
