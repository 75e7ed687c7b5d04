"""Shared fixtures: a real Xvfb display and a real PulseAudio server for the whole run, and
one session recorded on them and enriched (see `enriched`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from taskerino.virtual import VirtualAudio, VirtualDisplay

from .enriched import Enriched, record_enriched
from .postgres_server import PostgresServer, postgres_server
from .s3_server import MotoS3

# Property tests explore the same examples on every run: a failure found once is found
# again, and CI never fails on an example no earlier run tried.
settings.register_profile("taskerino", derandomize=True, deadline=None)
settings.load_profile("taskerino")


@pytest.fixture(scope="session")
def xdisplay() -> Iterator[VirtualDisplay]:
    """Xvfb with a 1920x1080 monitor (display:1) and a 1280x720 one (display:2)."""
    with VirtualDisplay() as display:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display.name
        yield display
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old


@pytest.fixture(scope="session")
def pulse() -> Iterator[VirtualAudio]:
    """A PulseAudio server with a null sink `recsink`; its environment is set for the run."""
    with VirtualAudio() as audio:
        saved = {k: os.environ.get(k) for k in audio.env}
        os.environ.update(audio.env)
        yield audio
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster for the run (see `postgres_server`)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """moto's S3 server (the S3 stand-in) on loopback for the run, with boto3's standard
    environment (endpoint, dummy credentials, region) pointing at it."""
    server = MotoS3()
    server.start()
    try:
        with server.environment():
            yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoS3) -> Iterator[str]:
    """A fresh bucket on the run's S3 server."""
    with s3_server.bucket() as name:
        yield name


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty data folder."""
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)  # as Taskerino makes its own: private
    return folder


@pytest.fixture(scope="session")
def enriched(
    tmp_path_factory: pytest.TempPathFactory, xdisplay: VirtualDisplay, pulse: VirtualAudio
) -> Enriched:
    """A session with windows, speech and a window switch, recorded and enriched once for
    the run; use `enriched.copy(folder)` before changing anything."""
    home = tmp_path_factory.mktemp("enriched") / "home"
    home.mkdir()
    return record_enriched(home, tmp_path_factory.mktemp("enriched-scratch"))
