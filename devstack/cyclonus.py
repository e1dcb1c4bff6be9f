"""Asks a real NetworkPolicy engine whether flows are allowed: cyclonus, built from the Go proxy.

The local cluster has no network plugin, so nothing there enforces a NetworkPolicy. cyclonus
(github.com/mattfenwick/cyclonus, built by devstack/build-module.sh) implements the
NetworkPolicy semantics of Kubernetes' own conformance tests: given the policies, read from the
cluster's API server by cyclonus itself, and flows (a source and a destination, each an address,
and for a pod its namespace and labels, over a port), it says whether each flow is allowed. It is
the judge of the isolation tests, instead of our reading of our own manifests.
"""

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.gobuild import GoBuild

VERDICT = re.compile(r"^\|\s*IS ALLOWED\?\s*\|\s*(TRUE|FALSE)\s*\|", re.MULTILINE)


@dataclass(frozen=True)
class Endpoint:
    """One end of a flow: an address, and for a pod its namespace and labels."""

    ip: str
    namespace: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def as_traffic(self) -> dict[str, Any]:
        """cyclonus's traffic JSON for this end."""
        end: dict[str, Any] = {"IP": self.ip}
        if self.namespace is not None:
            end["Internal"] = {
                "PodLabels": self.pod_labels,
                "NamespaceLabels": {
                    "kubernetes.io/metadata.name": self.namespace,
                    **self.namespace_labels,
                },
                "Namespace": self.namespace,
            }
        return end


@dataclass(frozen=True)
class Flow:
    """A connection from `source` to `destination` on a port."""

    source: Endpoint
    destination: Endpoint
    port: int
    protocol: str = "TCP"


BUILD = GoBuild(
    "cyclonus", "github.com/mattfenwick/cyclonus", "CYCLONUS_VERSION", ("cyclonus=./cmd/cyclonus",)
)


def binary() -> Path:
    """The cyclonus binary; built from the Go module proxy on first use (cached by version)."""
    return BUILD.build() / "cyclonus"


def verdicts(kubeconfig: str, namespace: str, flows: list[Flow]) -> list[bool]:
    """Whether the NetworkPolicies of `namespace`, as the API server holds them, allow each flow."""
    traffic = [
        {
            "Source": flow.source.as_traffic(),
            "Destination": flow.destination.as_traffic(),
            "Protocol": flow.protocol,
            "ResolvedPort": flow.port,
            "ResolvedPortName": "",
        }
        for flow in flows
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(traffic, file)
    try:
        result = subprocess.run(
            [
                str(binary()),
                "analyze",
                "--mode=query-traffic",
                f"--namespace={namespace}",
                f"--traffic-path={file.name}",
            ],
            env={**os.environ, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        Path(file.name).unlink()
    found = [answer == "TRUE" for answer in VERDICT.findall(result.stdout)]
    if result.returncode != 0 or len(found) != len(flows):
        raise RuntimeError(
            f"cyclonus exited {result.returncode} with {len(found)} verdicts for {len(flows)} "
            f"flows:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return found
