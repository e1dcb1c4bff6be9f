"""Commands built from the Go module proxy at a version pinned in versions.env, cached by version
outside the repository (devstack/build-module.sh does the work and prints where they are)."""

import os
import subprocess
from pathlib import Path

from devstack import processes
from devstack.layout import REPO_ROOT, read_versions


def build_module(name: str, module: str, version_key: str, *targets: str, tags: str = "") -> Path:
    """Build (or find cached) `targets` (OUTPUT=PACKAGE) of `module` with these build tags;
    their directory."""
    version = read_versions()[version_key]
    script = REPO_ROOT / "devstack" / "build-module.sh"
    try:
        result = subprocess.run(
            ["bash", str(script), name, module, version, *targets],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            env={**os.environ, "BUILD_TAGS": tags},
        )  # build progress goes to our stderr
    except subprocess.CalledProcessError as error:
        raise processes.StackError(
            f"building {name} {version} failed (exit {error.returncode})"
        ) from error
    return Path(result.stdout.strip().splitlines()[-1])
