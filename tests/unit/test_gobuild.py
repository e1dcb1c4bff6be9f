"""What `devstack up` decides about a Go-built component from the cache: there, being built by
another process (it holds the build's lock), or neither."""

import fcntl
from pathlib import Path

import pytest

from devstack.gobuild import GoBuild

BUILD = GoBuild("keda", "github.com/kedacore/keda/v2", "KEDA_VERSION", ("keda=./cmd/operator",))


def test_a_build_another_process_holds_is_seen_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CACHE", str(tmp_path))
    assert BUILD.directory == tmp_path / "bin" / f"keda-{BUILD.version}"
    assert not BUILD.cached()
    assert not BUILD.building()  # no lock file yet
    BUILD.directory.mkdir(parents=True)
    lock = BUILD.directory.with_name(BUILD.directory.name + ".lock")
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert BUILD.building()
        # Building elsewhere: `up` goes on without it, and starts no second build.
        reason = BUILD.deferred()
        assert reason is not None
        assert "building in the background" in reason
        assert str(BUILD.log) in reason
    assert not BUILD.building()  # the lock is free again
    assert not BUILD.log.exists()  # nothing was started while one ran


def test_a_complete_build_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CACHE", str(tmp_path))
    BUILD.directory.mkdir(parents=True)
    (BUILD.directory / ".complete").touch()
    assert BUILD.cached()
    assert BUILD.deferred() is None
    assert BUILD.build() == BUILD.directory  # the script finds it and builds nothing
