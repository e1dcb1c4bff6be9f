"""Other projects' CRDs for the local cluster, so the real API server validates every object of
theirs that deploy/ or the service writes. Each comes from its project's Go module at the version
pinned in versions.env, through the Go module proxy (the module cache keeps it); nothing of them
is copied into this repository. Only the CRDs: none of their controllers runs here (KEDA's
operator is [8/8]'s; cert-manager's controller is not served, and a devstack stand-in plays its
issuer).
"""

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack import processes
from devstack.layout import read_versions


@dataclass(frozen=True)
class CrdSource:
    """Where a project's CRDs are: its Go module, the versions.env key of its version, the
    module's directory of CRD files, and the CRDs it holds (awaited until Established)."""

    module: str
    version_key: str
    directory: Path
    crds: tuple[str, ...]

    def files(self, version: str | None = None) -> Path:
        """The module's CRD directory in the Go module cache, downloaded first if need be."""
        version = version or read_versions()[self.version_key]
        with tempfile.TemporaryDirectory() as empty:  # outside any go.mod
            try:
                result = subprocess.run(
                    ["go", "mod", "download", "-json", f"{self.module}@{version}"],
                    cwd=empty,
                    env={**os.environ, "GOFLAGS": "-mod=mod"},
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                )
            except (OSError, subprocess.SubprocessError) as error:
                detail = getattr(error, "stdout", "") or getattr(error, "stderr", "") or error
                raise processes.StackError(
                    f"cannot fetch {self.module}@{version}: {detail}"
                ) from error
        directory = Path(json.loads(result.stdout)["Dir"]) / self.directory
        if not directory.is_dir():
            raise processes.StackError(f"{self.module}@{version} has no {self.directory}")
        return directory


KEDA = CrdSource(
    "github.com/kedacore/keda/v2",
    "KEDA_VERSION",
    Path("config/crd/bases"),
    (
        "scaledobjects.keda.sh",
        "scaledjobs.keda.sh",
        "triggerauthentications.keda.sh",
        "clustertriggerauthentications.keda.sh",
    ),
)
CERT_MANAGER = CrdSource(
    "github.com/cert-manager/cert-manager",
    "CERT_MANAGER_VERSION",
    Path("deploy/crds"),
    (
        "certificates.cert-manager.io",
        "certificaterequests.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
    ),
)
INSTALLED = (KEDA, CERT_MANAGER)
"""Every project whose CRDs `devstack up` installs."""
