"""Candidate changes to the video pipeline, tried by monkeypatching (bench only).

Run the CLI with variants applied:
    .venv/bin/python bench/video_variants.py preset=superfast,crf=26 -- \
        --home DIR record --no-screenshots --video --source display:1 ...
bench_video.py takes `--variant SPEC` and records part a through this launcher. Nothing
here changes the project's files; a variant that pays off is to be ported to
src/taskerino by whoever owns the file.

Variants (comma-separated; the former `fast-compare` is now the recorder's own code):
- `preset=NAME`, `crf=N`, `tune=NAME` (`tune=none` drops zerolatency),
  `x264=PARAMS`, `keyint=SECONDS`: ChunkedEncoder settings.
"""

from __future__ import annotations

import sys
from typing import Any

import taskerino.media.encoder as encoder_mod


def apply(spec: str) -> list[str]:
    """Apply the variants in `spec`; returns their names."""
    applied: list[str] = []
    settings: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        if name in ("preset", "tune", "x264"):
            settings[name] = value
        elif name == "crf":
            settings[name] = int(value)
        elif name == "keyint":
            settings[name] = float(value)
        else:
            raise SystemExit(f"unknown variant {item!r}")
        applied.append(item)
    if settings:
        original = encoder_mod.ChunkedEncoder.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if "preset" in settings:
                kwargs["preset"] = settings["preset"]
            if "crf" in settings:
                kwargs["crf"] = settings["crf"]
            if "keyint" in settings:
                kwargs["keyint_seconds"] = settings["keyint"]
            if "x264" in settings:
                kwargs["x264_params"] = settings["x264"].replace(";", ":")
            original(self, *args, **kwargs)
            tune = settings.get("tune")
            if tune == "none":
                self.codec_options.pop("tune", None)
            elif tune:
                self.codec_options["tune"] = tune

        encoder_mod.ChunkedEncoder.__init__ = init  # type: ignore[method-assign]
    return applied


def main() -> None:
    if "--" not in sys.argv:
        raise SystemExit("usage: video_variants.py VARIANTS -- TASKERINO-ARGS")
    split = sys.argv.index("--")
    apply(",".join(sys.argv[1:split]))
    from taskerino.cli import main as cli_main

    sys.argv = ["taskerino", *sys.argv[split + 1 :]]
    cli_main()


if __name__ == "__main__":
    main()
