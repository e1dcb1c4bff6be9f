"""KEDA's CRDs (ScaledObject, TriggerAuthentication, ...) for the local cluster, so deploy/ can be
applied to it with server-side validation. They come from the `github.com/kedacore/keda/v2` Go
module at the version pinned in versions.env, through the Go module proxy (the module cache
keeps them); nothing of KEDA is copied into this repository. Only the CRDs: no operator runs.
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

from devstack import processes
from devstack.layout import read_versions

MODULE = "github.com/kedacore/keda/v2"
CRD_DIRECTORY = Path("config/crd/bases")
CRDS = (
    "scaledobjects.keda.sh",
    "scaledjobs.keda.sh",
    "triggerauthentications.keda.sh",
    "clustertriggerauthentications.keda.sh",
)


def crd_directory(version: str | None = None) -> Path:
    """The module's CRD directory in the Go module cache, downloaded first if need be."""
    version = version or read_versions()["KEDA_VERSION"]
    with tempfile.TemporaryDirectory() as empty:  # outside any go.mod
        try:
            result = subprocess.run(
                ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
                cwd=empty,
                env={**os.environ, "GOFLAGS": "-mod=mod"},
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stdout", "") or getattr(error, "stderr", "") or error
            raise processes.StackError(f"cannot fetch {MODULE}@{version}: {detail}") from error
    directory = Path(json.loads(result.stdout)["Dir"]) / CRD_DIRECTORY
    if not directory.is_dir():
        raise processes.StackError(f"{MODULE}@{version} has no {CRD_DIRECTORY}")
    return directory
