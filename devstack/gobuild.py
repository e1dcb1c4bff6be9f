"""Commands built from the Go module proxy at a version pinned in versions.env, cached by version
outside the repository (devstack/build-module.sh does the work, one build per module and
version at a time, and prints where they are).

Builds can run in the background at the lowest CPU priority, one after the other in the order
they are needed: on a new machine `devstack up --defer` starts them and goes on without what
they make, so that the checks and the tests that need none of it run meanwhile; whoever needs a
build later (`devstack up NAME`, a test) waits for it rather than starting another.
"""

import fcntl
import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack import processes
from devstack.layout import REPO_ROOT, read_versions

SCRIPT = REPO_ROOT / "devstack" / "build-module.sh"


def cache_root() -> Path:
    """Where built binaries are kept (INSTANCE_SERVICE_CACHE, else ~/.cache/instance-service)."""
    configured = os.environ.get("INSTANCE_SERVICE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "instance-service"


def _held(lock: Path) -> bool:
    """Whether another process holds this lock file."""
    if not lock.exists():
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


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
        """Whether a build of this module and version runs now (it holds the build's lock)."""
        return _held(self.directory.with_name(self.directory.name + ".lock"))

    def argv(self) -> list[str]:
        """The command that builds (or finds cached) and prints the directory."""
        return ["bash", str(SCRIPT), self.name, self.module, self.version, *self.targets]

    def build(self) -> Path:
        """Build (or find cached, or wait for the running build); the commands' directory."""
        try:
            result = subprocess.run(
                self.argv(),
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

    def deferred(self) -> str | None:
        """None when the commands are there; otherwise why the caller goes on without them."""
        if self.cached():
            return None
        return (
            f"not built yet: building in the background at low priority (log {self.log}); "
            f"`python -m devstack up` with its name starts it once built"
        )


def start_in_background(builds: Sequence[GoBuild]) -> list[GoBuild]:
    """Start the builds missing from the cache, detached, one after the other in this order, at
    the lowest CPU priority, each logging to its `log`; return them. One such chain at a time:
    while one runs (it holds a lock), none is started and nothing is returned."""
    missing = [build for build in builds if not build.cached()]
    lock = cache_root() / "bin" / "background-builds.lock"
    if not missing or _held(lock):
        return []
    lock.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        f"BUILD_TAGS={shlex.quote(build.tags)} {shlex.join(build.argv())}"
        f" >>{shlex.quote(str(build.log))} 2>&1"
        for build in missing
    ]
    # Each step's failure is in its log; the next ones still run.
    command = ["nice", "-n", "19", "flock", "-n", str(lock), "sh", "-c", "; ".join(steps)]
    os.posix_spawnp(
        command[0],
        command,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # outlives `devstack up`
    )
    return missing
