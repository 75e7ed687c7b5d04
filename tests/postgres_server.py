"""A throw-away PostgreSQL cluster (Debian's server binaries) for tests and benchmarks.

`initdb` refuses to run as root, so as root the cluster belongs to the unprivileged
`postgres` user the Debian package creates; as anyone else it is the current user's. It
listens on loopback at a free port and on a socket in its own folder, trusts every local
connection, and is stopped (immediately: nothing in it is worth keeping) at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Template databases made in each cluster (by port), for `new_database(migrated=True)`.
_TEMPLATES: dict[int, set[str]] = {}
_TEMPLATE_LOCK = threading.Lock()
# A user of the throw-away cluster who is not a superuser (see `new_database`).
PLAIN_USER = "taskerino_plain"


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL's server is not installed: run scripts/setup (Debian package postgresql)"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    port: int
    user: str
    # Runs `pg_ctl ACTION` on the cluster ("stop", "start": what a restart does to clients).
    control: Callable[[str], None]

    def url(self, database: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement as the cluster's superuser, outside any transaction."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(sql.encode())  # statements the tests build

    def new_database(self, *, migrated: bool = False, plain: bool = False) -> str:
        """A new database, empty or (`migrated`) a copy of one the store has created its
        schema in (a file copy: much faster than running the migration again); its URL.
        `plain`: owned by and reached as `PLAIN_USER`, a user who is not a superuser and so
        may not create the `rum` extension — what a managed server without RUM gives."""
        name = "t_" + uuid.uuid4().hex[:16]
        template = f" TEMPLATE {self._template(plain)}" if migrated else ""
        owner = f" OWNER {self._plain_user()}" if plain else ""
        self.admin(f"CREATE DATABASE {name}{template}{owner}")
        return self.url(name, PLAIN_USER if plain else None)

    def _plain_user(self) -> str:
        self.admin(
            f"DO $$ BEGIN CREATE ROLE {PLAIN_USER} LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        return PLAIN_USER

    def _template(self, plain: bool = False) -> str:
        name = "taskerino_template_plain" if plain else "taskerino_template"
        with _TEMPLATE_LOCK:
            if name not in _TEMPLATES.get(self.port, set()):
                from taskerino.store import open_store

                owner = f" OWNER {self._plain_user()}" if plain else ""
                self.admin(f"DROP DATABASE IF EXISTS {name}")
                self.admin(f"CREATE DATABASE {name}{owner}")
                url = self.url(name, PLAIN_USER if plain else None)
                open_store(url, Path("unused.db")).close()
                _TEMPLATES.setdefault(self.port, set()).add(name)
        return name

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A running throw-away cluster, removed afterwards. Tests skip fsync (nothing here
    survives them); `durable` keeps PostgreSQL's defaults, for benchmarks."""
    bindir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="taskerino-pg-"))
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(folder, user="postgres")
    data, port = folder / "data", _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> None:
        subprocess.run(
            [*prefix, *args], check=True, env=env, cwd=folder, capture_output=True, timeout=120
        )

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            user,
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off"

        def control(action: str) -> None:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                str(folder / "log"), "-m", "fast", "-w", action)  # fmt: skip

        control("start")
        try:
            yield PostgresServer(port, user, control)
        finally:
            with contextlib.suppress(subprocess.SubprocessError):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
