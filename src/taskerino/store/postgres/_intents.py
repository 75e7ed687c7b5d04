"""Blob writes in flight in PostgreSQL (the `BlobIntents` part)."""

from __future__ import annotations

from ...process import ProcessOwner
from ..base import BlobIntent, BlobIntents
from ._connection import PostgresBase


class PostgresBlobIntents(PostgresBase, BlobIntents):
    def add_blob_intent(self, intent: BlobIntent) -> None:
        self._write(
            "INSERT INTO blob_intents (hash, owner) VALUES (%s,%s) ON CONFLICT DO NOTHING",
            (intent.hash, intent.owner.encode()),
        )

    def remove_blob_intent(self, digest: str, owner: ProcessOwner) -> None:
        self._write("DELETE FROM blob_intents WHERE hash=%s AND owner=%s", (digest, owner.encode()))

    def blob_intents(self) -> list[BlobIntent]:
        with self._reading() as db:
            return [
                BlobIntent(r[0], ProcessOwner.decode(r[1]))
                for r in db.execute("SELECT hash, owner FROM blob_intents").fetchall()
            ]
