"""`instance-service db` migrates and reports on SQLite and PostgreSQL, passwords masked."""

import os
import subprocess
import sys
from urllib.parse import urlsplit

from store.migrate import head_revision


def _db(action: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "instance_service", "db", action],
        env={**os.environ, "INSTANCE_SERVICE_STORE__URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upgrade_then_current(database_url: str) -> None:
    before = _db("current", database_url)
    assert before.returncode == 0, before.stderr
    newest = head_revision()
    assert f"revision none, behind (newest is {newest})" in before.stdout

    first = _db("upgrade", database_url)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to revision {newest}" in first.stdout
    again = _db("upgrade", database_url)
    assert f"already at revision {newest}" in again.stdout
    assert f"revision {newest}, up to date" in _db("current", database_url).stdout

    password = urlsplit(database_url).password
    if password:
        assert password not in first.stdout + first.stderr
        assert "***" in first.stdout


def test_unreachable_database_is_a_clear_error() -> None:
    result = _db("upgrade", "postgresql://someone:hunter2@127.0.0.1:9/state")
    assert result.returncode == 69
    assert "cannot read the schema revision" in result.stderr
    assert "Connection refused" in result.stderr
    assert "hunter2" not in result.stderr
