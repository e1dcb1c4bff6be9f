"""Where the local stack keeps its files, and the fixed loopback ports it listens on."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1; the stack is one per machine and user."""

    amqp: int = 5672
    rabbitmq_management: int = 15672
    rabbitmq_distribution: int = 25672
    epmd: int = 4369
    postgres: int = 55432
    etcd_client: int = 2379
    etcd_peer: int = 2380
    apiserver: int = 6443
    controller_manager: int = 10257
    scheduler: int = 10259
    kwok: int = 10247
    odoo_standin: int = 18069
    # SeaweedFS (object storage): the S3 API, and the ports of its own parts.
    s3: int = 18333
    s3_grpc: int = 28333
    seaweed_master: int = 19333
    seaweed_master_grpc: int = 29333
    seaweed_volume: int = 19340
    seaweed_volume_grpc: int = 29340
    seaweed_filer: int = 18888
    seaweed_filer_grpc: int = 28888
    # Knot DNS (the customers' test zone), UDP and TCP.
    dns: int = 15353
    # KEDA: the operator's metrics, probes and gRPC metrics service; the metrics API server
    # (behind the API server's aggregation layer) and its own metrics, which it binds on every
    # interface (it has no flag for the address).
    keda_operator_metrics: int = 18180
    keda_operator_health: int = 18181
    keda_grpc: int = 19666
    keda_metrics_apiserver: int = 16443
    keda_metrics_apiserver_metrics: int = 18182
    # Prometheus, and RabbitMQ's own exporter (the rabbitmq_prometheus plugin) it scrapes.
    prometheus: int = 19090
    rabbitmq_prometheus: int = 15692


@dataclass(frozen=True)
class Layout:
    """Paths of the stack's state; `home` holds everything but PostgreSQL's data when root."""

    home: Path
    ports: Ports = Ports()

    @property
    def logs(self) -> Path:
        """One log file per process."""
        return self.home / "logs"

    @property
    def run(self) -> Path:
        """Pid files."""
        return self.home / "run"

    @property
    def data(self) -> Path:
        """Persistent data of etcd and RabbitMQ."""
        return self.home / "data"

    @property
    def pki(self) -> Path:
        """Certificates and keys of the control plane."""
        return self.home / "pki"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig of the local cluster."""
        return self.home / "kubeconfig"

    @property
    def credentials(self) -> Path:
        """Generated passwords (mode 0600)."""
        return self.home / "credentials.json"

    @property
    def postgres_home(self) -> Path:
        """PostgreSQL refuses to run as root, and its user must reach the data directory.

        Under root the stack's home usually sits below a 0700 directory, so the cluster lives in
        the postgres user's own home instead.
        """
        if os.geteuid() == 0:
            # One cluster per stack home, so two homes never share (and re-password) a cluster.
            tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:10]
            return Path(f"/var/lib/postgresql/instance-service-devstack-{tag}")
        return self.home / "postgres"


def default_layout() -> Layout:
    """The layout named by $DEVSTACK_HOME, else the per-user default."""
    configured = os.environ.get("DEVSTACK_HOME")
    if configured:
        return Layout(home=Path(configured).expanduser().resolve())
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Layout(home=state / "instance-service" / "devstack")


def read_versions() -> dict[str, str]:
    """The pinned versions from devstack/versions.env."""
    versions: dict[str, str] = {}
    for line in (REPO_ROOT / "devstack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions
