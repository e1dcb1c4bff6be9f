"""Commands built from the Go module proxy at a version pinned in versions.env, cached by version
outside the repository (devstack/build-module.sh does the work, one build per module and
version at a time, and prints where they are).

A build can run in the background at the lowest CPU priority: `devstack up` starts KEDA's and
Prometheus' that way on a new machine and goes on without them, and whoever needs them later
(`devstack up keda`, a test) waits for that build rather than starting another.
"""

import fcntl
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import processes
from devstack.layout import REPO_ROOT, read_versions

SCRIPT = REPO_ROOT / "devstack" / "build-module.sh"


def cache_root() -> Path:
    """Where built binaries are kept (INSTANCE_SERVICE_CACHE, else ~/.cache/instance-service)."""
    configured = os.environ.get("INSTANCE_SERVICE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "instance-service"


@dataclass(frozen=True)
class GoBuild:
    """Commands (`targets`: OUTPUT=PACKAGE) of a Go module, built with `tags`."""

    name: str
    module: str
    version_key: str
    targets: tuple[str, ...]
    tags: str = ""

    @property
    def version(self) -> str:
        """The pinned version."""
        return read_versions()[self.version_key]

    @property
    def directory(self) -> Path:
        """Where the commands are (or will be)."""
        return cache_root() / "bin" / f"{self.name}-{self.version}"

    @property
    def log(self) -> Path:
        """Where a background build writes its progress."""
        return cache_root() / "bin" / f"{self.name}-{self.version}.log"

    def cached(self) -> bool:
        """Whether a complete build is there."""
        return (self.directory / ".complete").exists()

    def building(self) -> bool:
        """Whether a build of this module and version runs now (it holds the lock)."""
        lock = self.directory.with_name(self.directory.name + ".lock")
        if not lock.exists():
            return False
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def _argv(self) -> list[str]:
        return ["bash", str(SCRIPT), self.name, self.module, self.version, *self.targets]

    def build(self) -> Path:
        """Build (or find cached, or wait for the running build); the commands' directory."""
        try:
            result = subprocess.run(
                self._argv(),
                stdout=subprocess.PIPE,
                text=True,
                check=True,
                env={**os.environ, "BUILD_TAGS": self.tags},
            )  # build progress goes to our stderr
        except subprocess.CalledProcessError as error:
            raise processes.StackError(
                f"building {self.name} {self.version} failed (exit {error.returncode}); "
                f"see {self.log} if it was built in the background"
            ) from error
        return Path(result.stdout.strip().splitlines()[-1])

    def start_in_background(self) -> None:
        """Start the build detached, at the lowest CPU priority, logging to `log`."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = ["nice", "-n", "19", *self._argv()]
        os.posix_spawnp(
            command[0],
            command,
            {**os.environ, "BUILD_TAGS": self.tags},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(self.log),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o644,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # outlives `devstack up`
        )

    def deferred(self) -> str | None:
        """None when the commands are there; otherwise start a background build (unless one
        runs) and say so: the caller goes on without them."""
        if self.cached():
            return None
        if not self.building():
            self.start_in_background()
        return (
            f"not built yet: building in the background at low priority (log {self.log}); "
            f"`python -m devstack up {self.name}` starts it once built"
        )
