"""What `devstack up` knows of a Go build from the cache (there, or being built by another
process, which holds the build's lock), and the background chain `devstack up --defer` starts:
the missing builds one after the other, in the order given, each logging to its file."""

import fcntl
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import processes
from devstack.gobuild import GoBuild, cache_root, start_in_background

BUILD = GoBuild("keda", "github.com/kedacore/keda/v2", "KEDA_VERSION", ("keda=./cmd/operator",))


@dataclass(frozen=True)
class ScriptedBuild(GoBuild):
    """A build that records its turn and completes at once, in place of a Go build."""

    @property
    def version(self) -> str:
        return "v0.0.0"

    def argv(self) -> list[str]:
        done = self.directory / ".complete"
        order = cache_root() / "order"
        return [
            "sh",
            "-c",
            f"echo {self.name} >>{shlex.quote(str(order))}; echo nice=$(nice) tags=$BUILD_TAGS; "
            f"mkdir -p {shlex.quote(str(self.directory))} && touch {shlex.quote(str(done))}",
        ]


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
    assert not BUILD.building()  # the lock is free again


def test_a_complete_build_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CACHE", str(tmp_path))
    BUILD.directory.mkdir(parents=True)
    (BUILD.directory / ".complete").touch()
    assert BUILD.cached()
    assert BUILD.build() == BUILD.directory  # the script finds it and builds nothing
    assert start_in_background([BUILD]) == []  # nothing to build: no chain


def test_the_background_chain_builds_the_missing_ones_in_order_at_low_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CACHE", str(tmp_path))
    first, cached, last = (ScriptedBuild(n, "example.org/m", "X", (), tags=n) for n in "abc")
    cached.directory.mkdir(parents=True)
    (cached.directory / ".complete").touch()
    assert start_in_background([first, cached, last]) == [first, last]
    assert processes.wait_until(lambda: first.cached() and last.cached(), 30)
    assert (tmp_path / "order").read_text().split() == ["a", "c"]
    assert first.log.read_text().split() == ["nice=19", "tags=a"]
    assert last.log.read_text().split() == ["nice=19", "tags=c"]
    assert not cached.log.exists()


def test_no_second_chain_starts_while_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_CACHE", str(tmp_path))
    build = ScriptedBuild("a", "example.org/m", "X", ())
    lock = tmp_path / "bin" / "background-builds.lock"
    lock.parent.mkdir(parents=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert start_in_background([build]) == []
    assert not build.log.exists()
