"""One enriched session for the whole run, recorded once and copied for each user.

About 16 s on Xvfb: a billing console in front with known text (a deploy console and a
build log beside it), speech from espeak-ng into
the PulseAudio null sink at ~2 s, then a switch to a deploy console at ~8 s; video,
screenshots and system audio, then enriched by a real worker (Tesseract, faster-whisper,
chapters, the search index). The enrichment tests and the browser tests read copies of
its data folder, so that what one of them changes never reaches another.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from taskerino.models import SessionConfig
from taskerino.sessions import StartRequest, Taskerino

from .xterm import xterm

SPOKEN = "please retry the quarterly invoice before friday"
BILLING = (
    "Billing console",
    [
        "INVOICE RETRY QUEUE",
        "reconcile ledger",
        "$ billing retry --invoice 4411",
        "invoice 4411 total 129.00 EUR",
        "attempt 1 of 3: gateway timeout",
        "attempt 2 of 3: card declined",
        "ledger mismatch on 129.00",
    ],
)
DEPLOY = (
    "Deploy console",
    [
        "KUBERNETES ROLLOUT",
        "canary healthy",
        "$ kubectl get pods -n api",
        "api-7f9c  Running  0 restarts",
        "api-5d2e  Running  0 restarts",
        "traffic shifted to 25 percent",
    ],
)
# Not in front at any time: text on the screen only.
LOG = (
    "Build log",
    [
        "build 2291 passed in 4 min 12 s",
        "tests: 812 passed, 3 skipped",
        "artifact billing-api.tar.gz uploaded",
        "release notes: invoice retries back off",
    ],
)


@dataclass(frozen=True)
class Enriched:
    """A data folder holding one enriched session; `moments` are seconds from its start
    (`speech`: the speech began, `switch`: the deploy console came to the front)."""

    home: Path
    session_id: str
    moments: dict[str, float]

    def copy(self, to: Path) -> Path:
        """A copy of the data folder at `to` (which must not exist), to change freely."""
        shutil.copytree(self.home, to)
        return to


def say(text: str, folder: Path) -> subprocess.Popen[bytes]:
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    return subprocess.Popen(["paplay", "--device=recsink", str(wav)])


def focus(wid: int) -> None:
    subprocess.run(["xdotool", "windowfocus", str(wid)], check=True)


def record_enriched(home: Path, scratch: Path) -> Enriched:
    """Record and enrich the session into `home` (needs $DISPLAY and the PulseAudio
    environment of the `xdisplay` and `pulse` fixtures)."""
    moments: dict[str, float] = {}
    with (
        xterm(BILLING[0], BILLING[1], x=0, y=0) as bill,
        xterm(DEPLOY[0], DEPLOY[1], x=900, y=0) as deploy,
        xterm(LOG[0], LOG[1], x=0, y=420, cols=44),
        Taskerino.open(home) as library,
    ):
        focus(bill.wid)
        config = SessionConfig(
            screenshot_interval=3.0,
            video=True,
            sources=["display:1"],
            fps=5,
            width=1280,
            height=720,
            system_audio=True,
        )
        session = library.start(StartRequest(name="Enrichment run", config=config))
        started = time.monotonic()
        time.sleep(1.5)
        moments["speech"] = time.monotonic() - started
        voice = say(SPOKEN, scratch)
        time.sleep(6.5)
        voice.wait(10)
        moments["switch"] = time.monotonic() - started
        focus(deploy.wid)
        time.sleep(8.0)
        library.end(session.id)
        library.worker(2).run(drain=True)
    return Enriched(home, session.id, moments)
