"""The pages in real Chromium (Debian's, through Playwright) against `taskerino serve` on
loopback: the run's enriched session (real windows, speech and OCR, see `tests.enriched`)
and sessions recorded from `test:` sources on Xvfb. The screenshots of the three pages in
docs/screenshots/ are taken here."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, FloatRect, Page, expect, sync_playwright

from taskerino.enrich.ocr import OcrEngine

from .enriched import DEPLOY, Enriched
from .web_helpers import Served
from .xterm import xterm

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
STALLING = Path(__file__).resolve().parent / "stalling_recorder.py"
SEEK_TOLERANCE = 0.25

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, enriched: Enriched) -> Iterator[Served]:
    """`taskerino serve` over a copy of the enriched session's data folder."""
    served = Served(enriched.copy(tmp_path_factory.mktemp("browser") / "home"), "--port", "0")
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
    yield from logged_in(browser, server)


@pytest.fixture
def sharp_page(browser: Browser, server: Served) -> Iterator[Page]:
    """A page drawn at twice the pixels, so that text in its screenshots can be read."""
    yield from logged_in(browser, server, scale=2)


def logged_in(browser: Browser, server: Served, scale: float = 1) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, device_scale_factor=scale
    )
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
    """Where the player is, once a seek asked for has finished."""
    wait_until(page, "!document.getElementById('player').seeking")
    return float(page.evaluate("document.getElementById('player').currentTime"))


def move_to(page: Page, seconds: float) -> None:
    page.evaluate(f"document.getElementById('player').currentTime = {seconds}")
    assert abs(current_time(page) - seconds) <= SEEK_TOLERANCE


def open_session(page: Page, server: Served, session_id: str, query: str = "") -> None:
    page.goto(f"{server.base}/sessions/{session_id}{query}")
    expect(page.locator("#session")).to_have_attribute("data-ready", "true")
    wait_until(page, "document.getElementById('player').readyState >= 1")


def test_the_list_shows_recorded_sessions_and_filters_them(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    page.goto(f"{server.base}/")
    rows = page.locator("#sessions tbody tr")
    expect(rows).to_have_count(4)  # the three, and the enriched session
    expect(page.locator("#count")).to_have_text("1–4 of 4 sessions")
    expect(rows.first.locator("img")).to_be_visible()  # a thumbnail (the newest has shots)

    page.fill("input[name=q]", "invoice")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=invoice*")
    expect(rows).to_have_count(1)  # by name, description or tag
    expect(rows.first).to_contain_text("Invoice retry hunt")

    page.goto(f"{server.base}/?tag=ops")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Deploy logs")
    page.select_option("select[name=status]", "active,paused")  # submits on change
    page.wait_for_url("**status=active%2Cpaused*")
    expect(page.locator("#count")).to_have_text("No sessions match.")

    page.goto(f"{server.base}/?sort=oldest&limit=1&offset=1")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Invoice retry hunt")
    page.click("a[rel=next]")
    expect(rows.first).to_contain_text("Deploy logs")


def test_the_list_searches_what_was_shown_and_said(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]], enriched: Enriched
) -> None:
    page.goto(f"{server.base}/")
    page.fill("input[name=q]", "friday")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=friday*")
    said = page.locator('#found-list .found-hit[data-kind="transcript"]')
    expect(said).to_have_count(1)
    expect(said).to_contain_text("Enrichment run")
    expect(said).to_contain_text("said")
    expect(said.locator("mark")).to_have_text(re.compile("^friday$", re.IGNORECASE))
    offset = float(said.get_attribute("data-media-offset") or "nan")
    assert abs(offset - enriched.moments["speech"]) < 2.5
    expect(page.locator("#sessions tbody tr")).to_have_count(0)  # no session is named so

    said.locator("a").click()  # opens the session at that moment
    page.wait_for_url(f"**/sessions/{enriched.session_id}?t=*")
    expect(page.locator("#session")).to_have_attribute("data-ready", "true")
    wait_until(page, f"Math.abs(document.getElementById('player').currentTime - {offset}) < 0.05")
    expect(page.locator("#transcript .line").first).to_have_class(re.compile(r"\bcurrent\b"))

    page.goto(f"{server.base}/?q=retry")  # on the screen, in names and notes
    kinds = page.locator("#found-list .found-hit").evaluate_all(
        "nodes => nodes.map(n => n.dataset.kind)"
    )
    assert {"ocr", "session", "note"} <= set(kinds), kinds
    malformed = page.goto(f"{server.base}/?q=%22unbalanced")
    assert malformed is not None and malformed.status == 200  # said on the page, not a failure
    expect(page.locator("#found .form-error")).to_contain_text("cannot search for")
    page.goto(f"{server.base}/?q=retry")
    page.screenshot(path=str(DOCS / "sessions.png"), full_page=True)


def test_chapters_transcript_text_and_activity_are_on_the_timeline_and_seek(
    page: Page, server: Served, enriched: Enriched
) -> None:
    session = server.api("GET", f"/api/sessions/{enriched.session_id}")
    chapters, lines = session["video"]["chapters"], session["transcript"]
    assert len(chapters) >= 2 and lines and session["ocr"] and len(session["activity"]) >= 2
    open_session(page, server, enriched.session_id)
    # Each item of each row is on the timeline at its offset.
    for kind, items, key in (
        ("chapters", chapters, "start_offset"),
        ("activity", session["activity"], "media_offset"),
        ("speech", lines, "start_offset"),
        ("text", session["ocr"], "media_offset"),
    ):
        shown = page.locator(f'#rows .track[data-kind="{kind}"] .mark').evaluate_all(
            "nodes => nodes.map(n => parseFloat(n.dataset.mediaOffset))"
        )
        assert shown == [item[key] for item in items], kind
    listed = page.locator("#chapters .chapter")
    expect(listed).to_have_count(len(chapters))
    expect(listed.first).to_contain_text(chapters[0]["title"])
    wait_until(  # every chapter's thumbnail has loaded
        page,
        "[...document.querySelectorAll('#chapters .chapter')].every(c => {"
        " const i = c.querySelector('img.thumb'); return i && i.complete && i.naturalWidth > 0 })",
    )

    line = page.locator("#transcript .line").first
    move_to(page, 12.0)
    line.click()
    assert abs(current_time(page) - lines[0]["start_offset"]) <= SEEK_TOLERANCE
    expect(line).to_have_class(re.compile(r"\bcurrent\b"))
    move_to(page, 14.0)
    listed.nth(1).click()
    assert abs(current_time(page) - chapters[1]["start_offset"]) <= SEEK_TOLERANCE
    expect(listed.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    expect(listed.nth(0)).not_to_have_class(re.compile(r"\bcurrent\b"))
    move_to(page, 1.0)
    page.locator('#rows .track[data-kind="chapters"] .mark').nth(1).click()  # its band
    assert abs(current_time(page) - chapters[1]["start_offset"]) <= SEEK_TOLERANCE
    move_to(page, 14.0)
    page.locator('#rows .track[data-kind="speech"] .mark').first.click()
    assert abs(current_time(page) - lines[0]["start_offset"]) <= SEEK_TOLERANCE
    page.locator('#rows .track[data-kind="activity"] .mark').nth(1).click()
    assert abs(current_time(page) - session["activity"][1]["media_offset"]) <= SEEK_TOLERANCE


def boxed_text(page: Page, engine: OcrEngine) -> str:
    """What the page shows under the one box of a matched word, read by Tesseract from
    a screenshot of that spot with the box itself hidden."""
    boxes = page.locator("#boxes .box")
    expect(boxes).to_have_count(1)
    box = boxes.first.bounding_box()
    assert box is not None and box["width"] > 4 and box["height"] > 4
    page.evaluate("document.getElementById('boxes').style.visibility = 'hidden'")
    pad = 0.25 * box["height"]
    png = page.screenshot(
        clip={
            "x": box["x"] - pad,
            "y": box["y"] - pad,
            "width": box["width"] + 2 * pad,
            "height": box["height"] + 2 * pad,
        }
    )
    page.evaluate("document.getElementById('boxes').style.visibility = ''")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    bigger = cv2.resize(decoded, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    return engine.read(np.asarray(bigger, np.uint8)).text


def inside(inner: FloatRect | None, outer: FloatRect | None) -> bool:
    assert inner is not None and outer is not None
    return (
        inner["x"] >= outer["x"] - 1
        and inner["y"] >= outer["y"] - 1
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 1
    )


def test_search_in_the_session_boxes_the_matched_words_on_the_picture(
    sharp_page: Page, server: Served, enriched: Enriched
) -> None:
    page = sharp_page
    engine = OcrEngine(psm=7)  # one line of text
    open_session(page, server, enriched.session_id)
    page.fill("#find", "rollout")
    hits = page.locator("#hits .hit")
    expect(hits.first).to_be_visible()
    found = server.api("GET", f"/api/search?q=rollout&session={enriched.session_id}")["hits"]
    assert hits.count() == len(found)
    offsets = [float(o) for o in hits.evaluate_all("ns => ns.map(n => n.dataset.mediaOffset)")]
    assert offsets == sorted(offsets)  # by time
    on_screen = [float(h.get_attribute("data-media-offset") or "nan") for h in hits.all()]

    page.keyboard.press("Escape")  # leaves the search box; j and k step through the hits
    page.keyboard.press("j")
    expect(hits.nth(0)).to_have_class(re.compile(r"\bchosen\b"))
    assert abs(current_time(page) - on_screen[0]) <= SEEK_TOLERANCE
    page.keyboard.press("j")
    expect(hits.nth(1)).to_have_class(re.compile(r"\bchosen\b"))
    assert abs(current_time(page) - on_screen[1]) <= SEEK_TOLERANCE
    page.keyboard.press("k")
    expect(hits.nth(0)).to_have_class(re.compile(r"\bchosen\b"))

    # A word read from a video frame: boxed over the video, where the word is.
    from_video = page.locator('#hits .hit[data-picture="video"]').first
    from_video.click()
    wanted = float(from_video.get_attribute("data-media-offset") or "nan")
    assert abs(current_time(page) - wanted) <= SEEK_TOLERANCE
    expect(page.locator("#boxes")).to_have_attribute("data-picture", "video")
    expect(page.locator("#still")).to_be_hidden()
    box = page.locator("#boxes .box").first
    assert inside(box.bounding_box(), page.locator("#player").bounding_box())
    assert "ROLLOUT" in boxed_text(page, engine).upper()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(DOCS / "session.png"), full_page=True, scale="css")

    # A word read from a screenshot (all displays, another size than the video): shown on
    # that screenshot, boxed where the word is on it.
    from_shot = page.locator('#hits .hit[data-picture="screenshot"]').nth(1)
    from_shot.click()
    wanted = float(from_shot.get_attribute("data-media-offset") or "nan")
    assert abs(current_time(page) - wanted) <= SEEK_TOLERANCE
    expect(page.locator("#still")).to_be_visible()
    expect(page.locator("#boxes")).to_have_attribute("data-picture", "screenshot")
    wait_until(page, "document.getElementById('still-img').complete")
    assert inside(box.bounding_box(), page.locator("#still-img").bounding_box())
    assert "ROLLOUT" in boxed_text(page, engine).upper()
    page.click("#still-close")
    expect(page.locator("#still")).to_be_hidden()
    expect(page.locator("#boxes .box")).to_have_count(0)
    engine.close()


def test_enrichment_progress_is_followed_live_and_its_results_appear(
    page: Page, server: Served, enriched: Enriched
) -> None:
    sid = enriched.session_id
    before = {c["id"] for c in server.api("GET", f"/api/sessions/{sid}")["video"]["chapters"]}
    open_session(page, server, sid)
    root = page.locator("#session")
    expect(root).to_have_attribute("data-enrichment", "settled")
    page.evaluate(
        "window.seenStages = new Set();"
        "new MutationObserver(() => document.querySelectorAll('#enrichment .badge')"
        ".forEach(b => window.seenStages.add(b.textContent)))"
        ".observe(document.getElementById('enrichment'), {childList: true, subtree: true})"
    )
    page.click("#enrich")  # the server's own worker runs the stages again
    expect(root).to_have_attribute("data-enrichment", "running")
    expect(root).to_have_attribute("data-enrichment", "settled", timeout=90_000)
    expect(page.locator("#enrichment .stage-done")).to_have_count(4)
    seen = set(page.evaluate("[...window.seenStages]"))
    assert any(text.endswith(": running") for text in seen), seen  # pushed as they ran
    # Each stage that committed brought its results to the page without a reload.
    wait_until(page, "+document.getElementById('session').dataset.revision >= 1")
    after = [c["id"] for c in server.api("GET", f"/api/sessions/{sid}")["video"]["chapters"]]
    assert after and not before & set(after)  # the chapters were made anew
    shown = page.locator("#chapters .chapter").evaluate_all("ns => ns.map(n => n.dataset.id)")
    assert shown == after
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


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
    expect(page.locator("#hits .hit")).to_have_count(1)  # the note, found by the index
    expect(page.locator("#hits .hit")).to_have_attribute("data-kind", "note")
    page.keyboard.press("Escape")


def test_a_session_recorded_from_the_page(
    page: Page, server: Served, recorded: dict[str, dict[str, Any]]
) -> None:
    with xterm(*DEPLOY, x=40, y=40):
        recorded_from_the_page(page, server)


def recorded_from_the_page(page: Page, server: Served) -> None:
    page.goto(f"{server.base}/record")
    # 2 displays, the terminal's window, 4 test patterns
    expect(page.locator("#sources .card")).to_have_count(7)
    expect(page.locator('#sources .card[data-source^="window:"]')).to_contain_text(DEPLOY[0])
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


def test_the_live_panel_warns_when_drops_pass_one_percent(page: Page, server: Served) -> None:
    """A recording whose source stalls (a test-only recorder, see `stalling_recorder`)
    really drops frames; the live panel turns from healthy to warning."""
    # Off the sessions list first: it reloads itself when a recording starts, and that
    # reload would cut across the navigation below.
    page.goto(f"{server.base}/record")
    command = [sys.executable, str(STALLING), "--home", str(server.home), "record"]
    command += ["--name", "Stalling source", "--no-screenshots", "--video"]
    command += ["--source", "test:stall", "--size", "320x240", "--fps", "10", "--duration", "60"]
    recorder = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (live := server.api("GET", "/api/sessions?status=active")["sessions"]):
            assert recorder.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        sid = live[0]["id"]
        page.goto(f"{server.base}/record?session={sid}")
        rate = page.locator("#st-drop-rate")
        page.evaluate(
            "window.healths = [];"
            "new MutationObserver(() => window.healths.push("
            "document.getElementById('st-drop-rate').className))"
            ".observe(document.getElementById('st-drop-rate'), {attributes: true})"
        )
        expect(rate).to_have_class(re.compile(r"\bhealth-warning\b"), timeout=30_000)
        shown = float(rate.inner_text().removesuffix("%").strip())
        assert 1.0 <= shown < 5.0, shown
        healths = page.evaluate("window.healths")
        assert healths.index("health health-healthy") < healths.index("health health-warning")
        stats = server.api("GET", f"/api/sessions/{sid}/stats")
        assert stats["frames_dropped"] > 0 and stats["drop_rate"] >= 0.01
    finally:
        recorder.send_signal(signal.SIGINT)
        _, errors = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, errors


def test_the_session_audio_plays_and_seeks(page: Page, server: Served, enriched: Enriched) -> None:
    """The joined audio (the segments' FLAC frames in a fragmented MP4, nothing re-encoded)
    as Chromium gets it from the API: its whole length known, a seek near the end plays."""
    session = server.api("GET", f"/api/sessions/{enriched.session_id}")
    audio_id = session["audio_attachment_id"]
    assert audio_id
    length = sum(s["duration"] for s in session["audio_segments"])
    assert length > 10  # more than one segment: the join is what is played
    page.evaluate(
        "url => { const a = document.createElement('audio'); a.id = 'joined'; a.muted = true;"
        " a.src = url; document.body.append(a); }",
        f"/api/media/{audio_id}",
    )
    wait_until(page, "document.getElementById('joined').readyState >= 1")
    duration = float(page.evaluate("document.getElementById('joined').duration"))
    assert duration == pytest.approx(length, abs=0.1)
    target = length - 2.0
    page.evaluate(f"document.getElementById('joined').currentTime = {target}")
    wait_until(page, "!document.getElementById('joined').seeking")
    page.evaluate("document.getElementById('joined').play()")
    wait_until(page, f"document.getElementById('joined').currentTime > {target + 0.3}")
    assert page.evaluate("document.getElementById('joined').error") is None


def test_the_export_button_downloads_the_session_as_a_zip(
    page: Page, server: Served, enriched: Enriched, tmp_path: Path
) -> None:
    import zipfile

    open_session(page, server, enriched.session_id)
    with page.expect_download() as info:
        page.locator("#export").click()
    download = info.value
    assert download.suggested_filename == f"taskerino-{enriched.session_id}.zip"
    saved = tmp_path / "export.zip"
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = {n.split("/", 1)[1] for n in archive.namelist()}
        assert archive.testzip() is None
    assert {"video.mp4", "session.json", "summary.md", "transcript.srt", "transcript.vtt"} <= names
    assert any(n.startswith("screenshots/") for n in names)
