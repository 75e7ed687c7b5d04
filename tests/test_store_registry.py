"""Stores and blob stores chosen by URL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskerino.errors import InvalidInput, StorageError
from taskerino.store import FolderBlobStore, SQLiteStore, registry
from taskerino.store.registry import Backend, open_blob_store, open_store, redact


def opened_path(url: str | None, default: Path) -> Path:
    store = open_store(url, default)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path.is_file()
        return store.path
    finally:
        store.close()


def test_no_url_gives_the_embedded_default(tmp_path: Path) -> None:
    default = tmp_path / "home" / "taskerino.db"
    default.parent.mkdir()
    assert opened_path(None, default) == default
    assert opened_path("", default) == default


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://{tmp}/abs.db", "{tmp}/abs.db"),
        ("sqlite://localhost{tmp}/local.db", "{tmp}/local.db"),
        ("SQLite://{tmp}/upper.db", "{tmp}/upper.db"),
        ("sqlite://{tmp}/with%20space%20%C3%A9.db", "{tmp}/with space é.db"),
        ("sqlite:relative.db", "relative.db"),
        ("sqlite:sub/relative.db", "sub/relative.db"),
        ("{tmp}/plain.db", "{tmp}/plain.db"),
        ("plain-relative.db", "plain-relative.db"),
    ],
)
def test_sqlite_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    path = opened_path(url.format(tmp=tmp_path), tmp_path / "default.db")
    assert path == Path(expected.format(tmp=tmp_path))
    assert (tmp_path / expected.format(tmp=tmp_path)).is_file()
    assert not (tmp_path / "default.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://db.example.com/t.db", "names the host"),
        ("sqlite:", "names no path"),
        ("sqlite:///t.db?mode=ro", "query"),
        ("mysql://localhost/t", "schemes supported are postgres:, postgresql:, sqlite:"),
        (
            "mongodb://me:secret@localhost/t",
            "schemes supported are postgres:, postgresql:, sqlite:",
        ),
        ("postgresql://me:secret@localhost:port/t", "malformed database URL"),
    ],
)
def test_bad_store_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        open_store(url, tmp_path / "default.db")
    assert "secret" not in str(caught.value)
    assert not (tmp_path / "default.db").exists()


def test_a_store_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        open_store(f"sqlite://{tmp_path}/missing/folder/t.db", tmp_path / "default.db")


def test_a_back_end_is_imported_only_when_its_scheme_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.STORES, "lazy", Backend("tests.lazy_backend:LazyStore"))
    monkeypatch.delitem(sys.modules, "tests.lazy_backend", raising=False)
    open_store(None, tmp_path / "default.db").close()
    assert "tests.lazy_backend" not in sys.modules
    store = open_store(f"lazy:{tmp_path}/lazy.db", tmp_path / "default.db")
    store.close()
    assert type(store).__name__ == "LazyStore"
    assert "tests.lazy_backend" in sys.modules
    assert (tmp_path / "lazy.db").is_file()


def test_a_back_end_whose_driver_is_missing_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        registry.STORES,
        "postgresql",
        Backend("taskerino_no_such_driver:PostgresStore", install=registry.TEAM_INSTALL),
    )
    monkeypatch.setitem(
        registry.BLOB_STORES,
        "s3",
        Backend("taskerino_no_such_driver:S3BlobStore", install=registry.TEAM_INSTALL),
    )
    with pytest.raises(InvalidInput) as caught:
        open_store("postgresql://me:secret@db.example.com/taskerino", tmp_path / "d.db")
    text = str(caught.value)
    assert "pip install 'taskerino[team]'" in text and "postgresql:, sqlite:" in text
    assert "secret" not in text
    with pytest.raises(InvalidInput, match=r"pip install 'taskerino\[team\]'"):
        open_blob_store("s3://bucket/prefix", tmp_path / "blobs")


def test_a_registered_target_that_is_no_store_is_a_programming_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.STORES, "odd", Backend("tests.lazy_backend:NotAStore"))
    monkeypatch.setitem(registry.BLOB_STORES, "odd", Backend("tests.lazy_backend:LazyStore"))
    with pytest.raises(TypeError, match="no Store"):
        open_store("odd:x", tmp_path / "d.db")
    with pytest.raises(TypeError, match="no BlobStore"):
        open_blob_store("odd:x", tmp_path / "blobs")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "{tmp}/default"),
        ("", "{tmp}/default"),
        ("{tmp}/plain folder", "{tmp}/plain folder"),
        ("file://{tmp}/from%20url", "{tmp}/from url"),
        ("file://localhost{tmp}/local", "{tmp}/local"),
        ("file:relative", "relative"),
    ],
)
def test_blob_store_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    blobs = open_blob_store(url.format(tmp=tmp_path) if url else url, tmp_path / "default")
    assert isinstance(blobs, FolderBlobStore)
    assert blobs.root == Path(expected.format(tmp=tmp_path))
    assert (tmp_path / expected.format(tmp=tmp_path)).is_dir()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://nas/share", "names the host"),
        ("ftp://host/x", "schemes supported are file:"),
    ],
)
def test_bad_blob_store_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_blob_store(url, tmp_path / "blobs")
    assert not (tmp_path / "blobs").exists()


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql://me:pw@host:5432/db") == "postgresql://me:***@host:5432/db"
    assert redact("postgresql://me@host/db") == "postgresql://me@host/db"
    assert redact("sqlite:///a:b@c.db") == "sqlite:///a:b@c.db"
    assert (
        redact("postgresql://me@host/db?sslmode=require&password=pw&x=1")
        == "postgresql://me@host/db?sslmode=require&password=***&x=1"
    )
