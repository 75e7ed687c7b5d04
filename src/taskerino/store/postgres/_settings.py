"""Settings in PostgreSQL (the `Settings` part)."""

from __future__ import annotations

import json

from ...errors import InvalidInput
from ..base import Settings
from ._connection import PostgresBase


class PostgresSettings(PostgresBase, Settings):
    def get_setting(self, key: str) -> object | None:
        with self._reading() as db:
            row = db.execute("SELECT value FROM settings WHERE key=%s", (key,)).fetchone()
            return json.loads(row[0]) if row else None

    def set_setting(self, key: str, value: object) -> None:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"setting {key!r} cannot be stored as JSON: {exc}") from exc
        self._write(
            "INSERT INTO settings (key, value) VALUES (%s,%s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, text),
        )
