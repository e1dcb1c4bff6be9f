"""KEDA on the local cluster, as host processes: its operator (which scales Deployments between
zero and one and keeps an HPA per ScaledObject) and its metrics API server (which answers that
HPA's external metrics through the API server's aggregation layer), both built from the KEDA Go
module at the version pinned in versions.env (devstack/build-module.sh).

Outside a pod, three things stand in for what a cluster gives them:

- certificates: one CA of KEDA's own and one cert that serves and is a client too, for the
  operator <-> metrics server gRPC link (mutual TLS) and for the metrics API (its SANs include
  `keda-metrics-apiserver.keda.svc`, the name the aggregator verifies);
- the route from the aggregator to the metrics server: a Service of type ExternalName whose
  name is `localhost`; the aggregator dials `https://localhost:<APIService port>` (it resolves
  ExternalName Services by name, and skips the endpoint checks it makes for ClusterIP ones);
- the namespace a pod would read from its ServiceAccount: `KEDA_CLUSTER_OBJECT_NAMESPACE`.
"""

import base64
import json
from pathlib import Path

from devstack import processes
from devstack.component import Health
from devstack.controlplane import BUILD as CONTROL_PLANE_BUILD
from devstack.controlplane import ControlPlane
from devstack.gobuild import GoBuild
from devstack.httpcheck import get
from devstack.layout import LOOPBACK, Layout
from devstack.pki import ensure_mutual_tls

NAMESPACE = "keda"
METRICS_SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"
PROCESSES = ("keda-operator", "keda-metrics-apiserver")
SANS = (
    f"DNS:localhost,DNS:keda-operator.{NAMESPACE}.svc,"
    f"DNS:{METRICS_SERVICE}.{NAMESPACE}.svc,IP:{LOOPBACK}"
)
READY_SECONDS = 120.0
BUILD = GoBuild(
    "keda",
    "github.com/kedacore/keda/v2",
    "KEDA_VERSION",
    ("keda=./cmd/operator", "keda-adapter=./cmd/adapter"),
)


class Keda:
    """KEDA's operator and metrics API server, registered with the local API server."""

    name = "keda"
    builds = (CONTROL_PLANE_BUILD, BUILD)

    def __init__(self, layout: Layout, control_plane: ControlPlane | None = None) -> None:
        self.layout = layout
        self.cluster = control_plane or ControlPlane(layout)
        self.certs = layout.pki / "keda"
        self._bin_dir: Path | None = None

    @property
    def bin_dir(self) -> Path:
        """Where the built binaries are; builds them on first use."""
        if self._bin_dir is None:
            self._bin_dir = BUILD.build()
        return self._bin_dir

    def _env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.layout.kubeconfig),
            "WATCH_NAMESPACE": "",  # every namespace
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
            "POD_NAMESPACE": NAMESPACE,
        }

    def _commands(self) -> dict[str, list[str]]:
        ports, kubeconfig, certs = self.layout.ports, str(self.layout.kubeconfig), self.certs
        return {
            "keda-operator": [
                str(self.bin_dir / "keda"),
                f"--kubeconfig={kubeconfig}",
                f"--cert-dir={certs}",
                f"--metrics-bind-address={LOOPBACK}:{ports.keda_operator_metrics}",
                f"--health-probe-bind-address={LOOPBACK}:{ports.keda_operator_health}",
                f"--metrics-service-bind-address={LOOPBACK}:{ports.keda_grpc}",
                "--leader-elect=false",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
            "keda-metrics-apiserver": [
                str(self.bin_dir / "keda-adapter"),
                f"--kubeconfig={kubeconfig}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--secure-port={ports.keda_metrics_apiserver}",
                f"--bind-address={LOOPBACK}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--metrics-service-address={LOOPBACK}:{ports.keda_grpc}",
                f"--port={ports.keda_metrics_apiserver_metrics}",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
        }

    def _ports(self, name: str) -> tuple[int, ...]:
        ports = self.layout.ports
        if name == "keda-operator":
            return (ports.keda_operator_metrics, ports.keda_operator_health, ports.keda_grpc)
        return (ports.keda_metrics_apiserver, ports.keda_metrics_apiserver_metrics)

    def _probe(self, name: str) -> tuple[bool, str]:
        ports = self.layout.ports
        if name == "keda-operator":
            url = f"http://{LOOPBACK}:{ports.keda_operator_health}/readyz"
            status, body = get(url)
            return status == 200, url if status == 200 else f"{url}: {status} {body[-200:]}"
        url = f"https://{LOOPBACK}:{ports.keda_metrics_apiserver}/readyz"
        admin = (self.layout.pki / "admin.crt", self.layout.pki / "admin.key")
        status, body = get(url, ca_file=self.certs / "ca.crt", client_cert=admin)
        return status == 200, url if status == 200 else f"{url}: {status} {body[-200:]}"

    def _registered(self) -> tuple[bool, str]:
        found = self.cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json")
        conditions = json.loads(found).get("status", {}).get("conditions", [])
        for condition in conditions:
            if condition.get("type") == "Available":
                available = condition.get("status") == "True"
                detail = f"{condition.get('reason')}: {condition.get('message', '')}"
                return available, f"APIService {APISERVICE} {detail}"
        return False, f"APIService {APISERVICE} has no Available condition yet"

    def up(self) -> None:
        """Certificates, the namespace, both processes, then the APIService, until Available."""
        ensure_mutual_tls(self.certs, "/CN=instance-service-devstack-keda-ca", SANS)
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(_namespace()))
        commands = self._commands()
        for name in PROCESSES:
            wanted = processes.launch_argv(commands[name], cwd=self.layout.home)
            running = processes.pid_of(self.layout, name) is not None
            if running and processes.started_with(self.layout, name) != wanted:
                processes.stop(self.layout, name)
            if processes.pid_of(self.layout, name) is None:
                for port in self._ports(name):
                    processes.ensure_port_free(port, name)
                processes.start(
                    self.layout, name, commands[name], env=self._env(), cwd=self.layout.home
                )
            if not processes.wait_until(lambda n=name: self._probe(n)[0], READY_SECONDS):  # type: ignore[misc]
                raise processes.StackError(
                    f"{name} did not become healthy: {self._probe(name)[1]}\n"
                    f"{processes.log_tail(self.layout, name)}"
                )
        registration = {"apiVersion": "v1", "kind": "List", "items": self._registration()}
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(registration))
        if not processes.wait_until(lambda: self._registered()[0], READY_SECONDS, interval=1.0):
            raise processes.StackError(
                f"{self._registered()[1]}\n"
                f"{processes.log_tail(self.layout, 'keda-metrics-apiserver')}"
            )

    def _registration(self) -> list[dict[str, object]]:
        """The ExternalName Service that routes to the metrics server on loopback, and the
        APIService that names it, trusting KEDA's CA."""
        ca_bundle = base64.b64encode((self.certs / "ca.crt").read_bytes()).decode()
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "service": {
                        "name": METRICS_SERVICE,
                        "namespace": NAMESPACE,
                        "port": self.layout.ports.keda_metrics_apiserver,
                    },
                    "caBundle": ca_bundle,
                },
            },
        ]

    def down(self) -> None:
        """Stop both processes (the APIService stays registered and unavailable, as in a
        cluster whose metrics server is down)."""
        for name in reversed(PROCESSES):
            processes.stop(self.layout, name)

    def health(self) -> list[Health]:
        """Probe both processes."""
        report = []
        for name in PROCESSES:
            running = processes.pid_of(self.layout, name) is not None
            idle = "not running" if BUILD.cached() else "not built yet"
            healthy, detail = self._probe(name) if running else (False, idle)
            report.append(Health(name, running and healthy, detail))
        return report


def _namespace() -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
