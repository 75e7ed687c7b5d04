"""The team profile's store: one PostgreSQL database shared by every machine, one module
per part of `Store` (as the SQLite store). Needs psycopg 3 and psycopg_pool (the `team`
extra); `registry` imports this package only when a `postgresql:` URL is opened.

`_connection` holds what every part shares (the pool, transactions, errors); `_schema` the
tables, the search index and their migrations.
"""

from ._schema import DB_VERSION
from ._store import PostgresStore

__all__ = ["DB_VERSION", "PostgresStore"]
