"""The embedded store: one SQLite database in WAL mode, one module per part of `Store`.

`_connection` holds what every part shares (connections, transactions, errors); `_schema`
the tables and their migrations.
"""

from ._schema import DB_VERSION, SCHEMA
from ._sessions import SUMMARY as _SUMMARY
from ._store import SQLiteStore

__all__ = ["DB_VERSION", "SCHEMA", "_SUMMARY", "SQLiteStore"]
