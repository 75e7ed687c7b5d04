"""`python -m taskerino.demo`: record a short session on the embedded default and show it.

Without a screen (no DISPLAY) the demo records a virtual display with a terminal on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack

from .models import SessionConfig
from .sessions import StartRequest, Taskerino
from .virtual import VirtualDisplay

BUSY_TERMINAL = (
    "while true; do date; uname -a; ls -l --color=never /usr/bin | shuf -n 30; sleep 1; done"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--home", default=None, help="data folder (default: the usual one)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        if not os.environ.get("DISPLAY"):
            display = stack.enter_context(VirtualDisplay())
            os.environ["DISPLAY"] = display.name
            print(f"no screen: recording the virtual display {display.name}")
            if shutil.which("xterm"):
                term = subprocess.Popen(
                    ["xterm", "-geometry", "160x50+40+40", "-e", "bash", "-c", BUSY_TERMINAL],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                stack.callback(term.kill)
                time.sleep(1.0)
        library = stack.enter_context(Taskerino.open(args.home))
        config = SessionConfig(
            screenshot_interval=3.0,
            video=True,
            sources=["display:1"],
            fps=15,
            width=1920,
            height=1080,
        )
        session = library.start(
            StartRequest(
                name="Taskerino demo",
                description="A short session recorded by the demo.",
                config=config,
            )
        )
        print(f"recording session {session.id} for {args.seconds:.0f} s ...")
        time.sleep(args.seconds / 2)
        library.add_note(session.id, "halfway through the demo")
        time.sleep(args.seconds / 2)
        ended = library.end(session.id)
        print(f"\n{ended.name} [{ended.status}] {ended.total_duration:.1f} s")
        print(f"  data folder: {library.home}")
        for shot in ended.screenshots:
            path = library.attachment_path(library.attachment(shot.attachment_id))
            print(f"  screenshot at {shot.media_offset:5.1f} s: {path}")
        if ended.video and ended.video.full_video_attachment_id:
            video = library.attachment(ended.video.full_video_attachment_id)
            print(
                f"  video {ended.video.width}x{ended.video.height} "
                f"{ended.video.duration:.1f} s: {library.attachment_path(video)}"
            )
        for item in ended.context_items:
            print(f"  {item.type} at {item.media_offset:5.1f} s: {item.content}")
        problems = library.doctor()
        print("  doctor: " + ("ok" if not problems else "; ".join(problems)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
