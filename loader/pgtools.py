"""PostgreSQL's own client programs (pg_dump, pg_restore), run for PG_URL without putting its password
on a command line: the connection goes in --dbname without the password, the password in a private
passfile (mode 0600, deleted afterwards) named by PGPASSFILE.

Debian installs each major version's programs in /usr/lib/postgresql/<major>/bin; a dump is made and
restored with the server's own major version (an older pg_dump refuses a newer server, and an older
pg_restore cannot read a newer dump).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

import psycopg2
import psycopg2.extensions

from .config import Config
from .errors import BackupError
from .pg import Connection, Cursor, driver_errors, one, pg_params
from .redaction import redact

SERVER_MAJOR = "SELECT current_setting('server_version_num')::int / 10000"


def database_name(config: Config) -> str:
    """The database PG_URL names (libpq's default: the user's name)."""
    return _database_of(_parsed(config))


def _parsed(config: Config) -> Dict[str, str]:
    return pg_params(config.pg_url.reveal())


def _database_of(params: Dict[str, str]) -> str:
    return params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE", "")


class PgTools:
    def __init__(self, config: Config) -> None:
        self.config = config
        params = _parsed(config)
        self._password = params.pop("password", None)
        params.setdefault("connect_timeout", "10")
        self.params = params
        self.dbname = _database_of(params)
        self._major: Optional[int] = None

    def connect(self, dbname: Optional[str] = None, autocommit: bool = False) -> Connection:
        params = dict(self.params, application_name="influx-archive")
        if dbname:
            params["dbname"] = dbname
        if self._password:
            params["password"] = self._password
        with driver_errors(self.config):
            conn = psycopg2.connect(**params)  # type: ignore[call-overload]  # libpq keywords, all text
        conn.autocommit = autocommit
        return conn

    def conninfo(self, dbname: Optional[str] = None) -> str:
        """A libpq connection string without the password (that one goes in the passfile)."""
        params = dict(self.params)
        if dbname:
            params["dbname"] = dbname
        return psycopg2.extensions.make_dsn(**params)

    def server_major(self, cur: Cursor) -> int:
        if self._major is None:
            cur.execute(SERVER_MAJOR)
            self._major = one(cur)[0]
        return self._major

    def program(self, name: str, major: int) -> str:
        """The path of pg_dump/pg_restore for the server's major version (or a newer one)."""
        exact = f"/usr/lib/postgresql/{major}/bin/{name}"
        if os.access(exact, os.X_OK):
            return exact
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_major_of_path, reverse=True)
        on_path = shutil.which(name)
        for path in candidates + ([on_path] if on_path else []):
            found = _version_major(path)
            if found is not None and found >= major:
                return path
        raise BackupError(f"no {name} for PostgreSQL {major} on this machine",
                          hint=f"install it: sudo apt-get install postgresql-client-{major}")

    @contextlib.contextmanager
    def environment(self) -> Iterator[Dict[str, str]]:
        """The environment for a client program: PGPASSFILE points at a private, temporary passfile."""
        env = dict(os.environ)
        env["LC_ALL"] = "C"  # messages in English, whatever the locale: they are parsed and shown as they are
        if self._password:
            # libpq prefers PGPASSWORD to a passfile; in-process connections prefer the URL's password
            # to both. Dropping it makes pg_dump use the same password as every other command.
            env.pop("PGPASSWORD", None)
        with tempfile.TemporaryDirectory(prefix="influx-archive-") as private:
            if self._password:
                path = os.path.join(private, "pgpass")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    escaped = self._password.replace("\\", "\\\\").replace(":", "\\:")
                    handle.write(f"*:*:*:*:{escaped}\n")
                env["PGPASSFILE"] = path
            yield env

    def run(self, argv: List[str], timeout: Optional[float] = None) -> Tuple[int, str]:
        """Run a client program; returns (exit code, its error output with secrets removed)."""
        with self.environment() as env:
            try:
                done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                return 124, f"{os.path.basename(argv[0])} took longer than {timeout}s"
        text = done.stderr.decode("utf-8", "replace")
        return done.returncode, redact(text, self.config.secrets())


def _major_of_path(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match.group(1)) if match else 0


def _version_major(path: str) -> Optional[int]:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def first_error(text: str) -> str:
    """The most telling line of a client program's error output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "FATAL" in line or "could not" in line:
            return re.sub(r"^(pg_dump|pg_restore): (error: )?", "", line)
    return lines[0] if lines else "no message"
