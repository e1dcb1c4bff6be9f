"""PostgreSQL from Debian's packages: a cluster of our own on loopback, the service's database,
and the admin role the service uses to create tenant roles and databases."""

import os
import pwd
import shutil
import signal
from collections.abc import Collection
from pathlib import Path

from devstack import processes
from devstack.component import Health
from devstack.credentials import (
    POSTGRES_ADMIN_ROLE,
    POSTGRES_SERVICE_DATABASE,
    POSTGRES_SERVICE_ROLE,
    Credentials,
)
from devstack.layout import LOOPBACK, Layout

NAME = "postgres"


def _bin_dir() -> Path:
    """The newest installed server version's binaries (Debian keeps them off PATH)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if not versions:
        raise processes.StackError(
            "PostgreSQL is not installed: run scripts/bootstrap.sh (apt-get install postgresql)"
        )
    return versions[-1].parent


def _literal(value: str) -> str:
    """A SQL string literal; the values are devstack's own names and generated passwords."""
    return "'" + value.replace("'", "''") + "'"


class Postgres:
    """One PostgreSQL cluster listening on 127.0.0.1 and a private Unix socket."""

    name = NAME
    builds = ()

    def __init__(self, layout: Layout, credentials: Credentials) -> None:
        self.layout = layout
        self.credentials = credentials
        self.base = layout.postgres_home
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        # Running as root, the server and its tools run as the postgres user; otherwise as us.
        self.user = "postgres" if os.geteuid() == 0 else None

    def _prepare(self) -> None:
        bin_dir = _bin_dir()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            for path in (self.base, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        if (self.data / "PG_VERSION").exists():
            return
        if self.data.exists():
            shutil.rmtree(self.data)  # a half-made cluster from an interrupted first run
        pwfile = self.base / "initdb.pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text("unused: the superuser logs in over the socket only\n")
        if self.user is not None:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        try:
            processes.run(
                self._as_user(
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth-local=peer" if self.user else "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ),
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _as_user(self, *argv: str) -> list[str]:
        if self.user is None:
            return list(argv)
        return ["runuser", "-u", self.user, "--", *argv]

    def psql(self, sql: str, database: str = "postgres", hidden: Collection[str] = ()) -> str:
        """Run SQL as the cluster's superuser over the private socket; `hidden` (passwords in
        the SQL) is masked in its errors, which may quote the statement."""
        return processes.run(
            self._as_user(
                str(_bin_dir() / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.layout.ports.postgres),
                "-U",
                "postgres",
                "-d",
                database,
            ),
            stdin=sql,  # on stdin, so passwords never show in the process list
            what="psql",
            hidden=hidden,
        )

    def _ready(self) -> bool:
        try:
            processes.run(
                [
                    str(_bin_dir() / "pg_isready"),
                    "-q",
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(self.layout.ports.postgres),
                ],
                what="pg_isready",
            )
        except processes.StackError:
            return False
        return True

    def start(self) -> None:
        """Create the cluster on first use, start it, and wait until it accepts connections."""
        self._prepare()
        if processes.pid_of(self.layout, NAME) is None:
            processes.ensure_port_free(self.layout.ports.postgres, "PostgreSQL")
            processes.start(
                self.layout,
                NAME,
                [
                    str(_bin_dir() / "postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(self.layout.ports.postgres),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "fsync=off",  # a throwaway dev cluster: speed over crash safety
                    "-c",
                    "max_connections=200",
                ],
                user=self.user,
                cwd=self.base,
            )
        if not processes.wait_until(self._ready, 60):
            raise processes.StackError(
                f"PostgreSQL did not accept connections\n{processes.log_tail(self.layout, NAME)}"
            )

    def up(self) -> None:
        """Start the cluster and make sure the service's roles and database exist."""
        self.start()
        self._ensure_role(POSTGRES_SERVICE_ROLE, self.credentials.postgres_service, "LOGIN")
        # The admin role creates tenant roles and databases; it is no superuser.
        self._ensure_role(
            POSTGRES_ADMIN_ROLE, self.credentials.postgres_admin, "LOGIN CREATEDB CREATEROLE"
        )
        exists = self.psql(
            f"SELECT 1 FROM pg_database WHERE datname = {_literal(POSTGRES_SERVICE_DATABASE)}"  # noqa: S608 - quoted by _literal
        ).strip()
        if not exists:
            self.psql(
                f'CREATE DATABASE "{POSTGRES_SERVICE_DATABASE}" OWNER "{POSTGRES_SERVICE_ROLE}"'
            )
        # Tenant roles may connect to their own database only: not the service's, and not the
        # maintenance databases every role could reach by default.
        for database in (POSTGRES_SERVICE_DATABASE, "postgres", "template1"):
            self.psql(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        self.psql(f'GRANT CONNECT ON DATABASE "postgres" TO "{POSTGRES_ADMIN_ROLE}"')
        # DROP DATABASE ... WITH (FORCE) ends every session in the database first; one owned by
        # no role the admin is a member of (an autovacuum worker, say) needs pg_signal_backend.
        self.psql(f'GRANT pg_signal_backend TO "{POSTGRES_ADMIN_ROLE}"')

    def _ensure_role(self, role: str, password: str, options: str) -> None:
        found = self.psql(
            f"SELECT 1 FROM pg_roles WHERE rolname = {_literal(role)}"  # noqa: S608 - quoted by _literal
        ).strip()
        verb = "ALTER" if found else "CREATE"
        self.psql(
            f'{verb} ROLE "{role}" WITH {options} PASSWORD {_literal(password)}', hidden=(password,)
        )

    def down(self) -> None:
        """Fast shutdown: roll back open transactions and stop."""
        processes.stop(self.layout, NAME, sig=signal.SIGINT)

    def health(self) -> list[Health]:
        """Whether the server accepts connections on its TCP port."""
        healthy = self._ready()
        return [Health(NAME, healthy, f"{LOOPBACK}:{self.layout.ports.postgres}, data {self.data}")]
