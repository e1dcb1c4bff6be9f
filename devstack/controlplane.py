"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok faking one node so pods get scheduled, run and become Ready."""

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack import crds, processes
from devstack.component import Health
from devstack.gobuild import GoBuild
from devstack.httpcheck import get
from devstack.issuer import READY_FILE as ISSUER_READY
from devstack.jobrunner import READY_FILE as JOB_RUNNER_READY
from devstack.kwok_stages import kwok_config
from devstack.layout import LOOPBACK, REPO_ROOT, Layout, read_versions
from devstack.pki import FRONT_PROXY_CLIENT, ensure_pki
from devstack.provisioner import STORAGE_CLASS, storage_class
from k8s.tenancy import build_default_deny, build_tenant_namespace

SERVICE_CIDR = "10.96.0.0/16"
# Pod and node IPs are data only: nothing here routes to them, and nothing connects to them.
# EndpointSlices reject loopback addresses, so they come from a private range.
POD_CIDR = "10.244.0.1/16"
NODE_IP = "10.243.0.1"
NODE_NAME = "devstack-node-0"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
TENANT_NAMESPACE = "odoo-tenants"
# Start order; stopped in reverse.
PROCESSES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "volume-provisioner",
    "odoo-standin",
    "job-runner",
    "certificate-issuer",
)


@dataclass(frozen=True)
class ControlPlaneBuild(GoBuild):
    """etcd, kwok and Kubernetes' servers and kubectl, built together by
    devstack/build-binaries.sh (Kubernetes' staging modules need a go.mod of their own)."""

    @property
    def version(self) -> str:
        """The three pinned versions, as the cache directory names them."""
        found = read_versions()
        kubernetes, etcd, kwok = (
            found[k] for k in ("KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION")
        )
        return f"{kubernetes}-etcd-{etcd}-kwok-{kwok}"

    def argv(self) -> list[str]:
        """The script, which prints the directory."""
        return ["bash", str(REPO_ROOT / "devstack" / "build-binaries.sh")]


BUILD = ControlPlaneBuild("k8s", "k8s.io/kubernetes", "KUBERNETES_VERSION", ())


class ControlPlane:
    """The Kubernetes part of the stack, started in dependency order."""

    name = "kubernetes"
    builds = (BUILD,)

    def __init__(self, layout: Layout, bin_dir: Path | None = None) -> None:
        self.layout = layout
        self._bin_dir = bin_dir
        self.pki = layout.pki

    @property
    def bin_dir(self) -> Path:
        """Where the built binaries are; builds them on first use."""
        if self._bin_dir is None:
            self._bin_dir = BUILD.build()
        return self._bin_dir

    # -- configuration -------------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devstack",
                    "cluster": {
                        "server": f"https://{LOOPBACK}:{self.layout.ports.apiserver}",
                        "certificate-authority-data": b64("ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "devstack-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "devstack", "context": {"cluster": "devstack", "user": "devstack-admin"}}
            ],
            "current-context": "devstack",
        }
        path = self.layout.kubeconfig
        path.touch(mode=0o600)
        path.write_text(json.dumps(kubeconfig, indent=2))  # JSON is valid kubeconfig YAML

    def _commands(self) -> dict[str, list[str]]:
        ports, pki, bin_dir = self.layout.ports, self.pki, self.bin_dir
        kubeconfig = str(self.layout.kubeconfig)
        etcd_url = f"http://{LOOPBACK}:{ports.etcd_client}"
        peer_url = f"http://{LOOPBACK}:{ports.etcd_peer}"
        component_auth = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
        ]
        return {
            "etcd": [
                str(bin_dir / "etcd"),
                "--name=devstack",
                f"--data-dir={self.layout.data / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=devstack={peer_url}",
                "--unsafe-no-fsync=true",  # a throwaway dev cluster: speed over crash safety
            ],
            "kube-apiserver": [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # RBAC is on so least-privilege roles can be proven against the real authorizer.
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # No kubelet or kube-proxy exists; loopback cannot be an endpoint of `kubernetes`.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                # The aggregation layer, for KEDA's metrics server (devstack/keda.py). Its
                # APIService names an ExternalName Service, which the aggregator dials by name
                # only while aggregator routing (to endpoints) stays off, the default.
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            ],
            "kube-controller-manager": [
                str(bin_dir / "kube-controller-manager"),
                *component_auth,
                f"--secure-port={ports.controller_manager}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=devstack",
                # Tests create and delete namespaces quickly; at the default client limits
                # (20 requests/s) the EndpointSlice controller falls behind and backs off.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                # Every EndpointSlice sync is logged: a stale slice is then diagnosable.
                "--vmodule=endpointslice_controller=4",
                # A busy 2-core machine can delay kwok's Lease renewal: tolerate it rather than
                # mark the node NotReady (which marks every pod on it not Ready for good).
                "--node-monitor-grace-period=2m",
                "--profiling=false",
            ],
            "kube-scheduler": [
                str(bin_dir / "kube-scheduler"),
                *component_auth,
                f"--secure-port={ports.scheduler}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--profiling=false",
            ],
            "volume-provisioner": [
                sys.executable,
                "-m",
                "devstack.provisioner",
                kubeconfig,
                str(self.layout.data / "volumes"),
            ],
            "odoo-standin": [
                sys.executable,
                "-m",
                "devstack.standin",
                kubeconfig,
                str(ports.odoo_standin),
            ],
            "job-runner": [
                sys.executable,
                "-m",
                "devstack.jobrunner",
                kubeconfig,
                str(self.layout.data / "jobs"),
                str(self.layout.logs / "jobs"),
            ],
            "certificate-issuer": [
                sys.executable,
                "-m",
                "devstack.issuer",
                kubeconfig,
                str(self.layout.data / "issuer"),
            ],
            "kwok": [
                str(bin_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={self.layout.home / 'kwok.yaml'}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                f"--node-ip={NODE_IP}",
                f"--server-address={LOOPBACK}:{ports.kwok}",
            ],
        }

    def _ports(self, name: str) -> tuple[int, ...]:
        ports = self.layout.ports
        return {
            "etcd": (ports.etcd_client, ports.etcd_peer),
            "kube-apiserver": (ports.apiserver,),
            "kube-controller-manager": (ports.controller_manager,),
            "kube-scheduler": (ports.scheduler,),
            "kwok": (ports.kwok,),
            "volume-provisioner": (),
            "odoo-standin": (ports.odoo_standin,),
            "job-runner": (),
            "certificate-issuer": (),
        }[name]

    # -- health --------------------------------------------------------------------------

    def _probe(self, name: str) -> tuple[bool, str]:
        ports, pki = self.layout.ports, self.pki
        admin = (pki / "admin.crt", pki / "admin.key")
        if name == "etcd":
            url = f"http://{LOOPBACK}:{ports.etcd_client}/health"
            status, body = get(url)
            return status == 200 and '"true"' in body, url
        if name == "kube-apiserver":
            url = f"https://{LOOPBACK}:{ports.apiserver}/readyz"
            status, body = get(url, ca_file=pki / "ca.crt", client_cert=admin)
            return status == 200, url if status == 200 else f"{url}: {status} {body[-300:]}"
        if name in ("kube-controller-manager", "kube-scheduler"):
            port = (
                ports.controller_manager if name == "kube-controller-manager" else ports.scheduler
            )
            url = f"https://{LOOPBACK}:{port}/healthz"
            status, body = get(url, verify=False)
            return status == 200, url if status == 200 else f"{url}: {status} {body[-300:]}"
        if name == "odoo-standin":
            url = f"http://{LOOPBACK}:{ports.odoo_standin}/web/health"
            status, _body = get(url)  # no pod named: 400 means it is up and answering
            return status == 400, f"{url} plays the Ready pods of managed Deployments"
        if name == "job-runner":
            ready = (self.layout.data / "jobs" / JOB_RUNNER_READY).exists()
            return ready, "runs the pods of instance-service's own Jobs on this host"
        if name == "certificate-issuer":
            ready = (self.layout.data / "issuer" / ISSUER_READY).exists()
            return ready, "plays cert-manager's issuer: signs Certificates with a local CA"
        if name == "volume-provisioner":
            url = (
                f"https://{LOOPBACK}:{ports.apiserver}"
                f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}"
            )
            status, _body = get(url, ca_file=pki / "ca.crt", client_cert=admin)
            return status == 200, f"StorageClass {STORAGE_CLASS} (default), hostPath volumes"
        if name == "kwok":
            # The Node in etcd may still say Ready from before a restart: ask kwok itself too.
            url = f"http://{LOOPBACK}:{ports.kwok}/healthz"
            status, body = get(url)
            if status != 200:
                return False, f"{url}: {status} {body[-200:]}"
            return self._node_ready()
        raise ValueError(name)

    def _node_ready(self) -> tuple[bool, str]:
        url = f"https://{LOOPBACK}:{self.layout.ports.apiserver}/api/v1/nodes/{NODE_NAME}"
        status, body = get(
            url,
            ca_file=self.pki / "ca.crt",
            client_cert=(self.pki / "admin.crt", self.pki / "admin.key"),
        )
        if status != 200:
            return False, f"node {NODE_NAME}: {status}"
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return ready, f"node {NODE_NAME} {'Ready' if ready else 'not Ready'}"

    # -- lifecycle -----------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """Run the built kubectl with the admin kubeconfig."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.layout.kubeconfig}", *args]
        try:
            result = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise processes.StackError(f"kubectl {args[0]}: {error}") from error
        if result.returncode != 0:
            raise processes.StackError(f"kubectl {' '.join(args[:2])}: {result.stderr.strip()}")
        return result.stdout

    def up(self) -> None:
        """Start each process in order, waiting for it to be healthy, then add the fake node."""
        ensure_pki(self.pki)
        self._write_kubeconfig()
        kwok_file = self.layout.home / "kwok.yaml"
        config = kwok_config()
        if not kwok_file.exists() or kwok_file.read_text() != config:
            kwok_file.write_text(config)
            if processes.pid_of(self.layout, "kwok") is not None:  # started with other stages
                processes.stop(self.layout, "kwok")
        (self.layout.data / "etcd").mkdir(parents=True, exist_ok=True)
        commands = self._commands()
        for name in PROCESSES:
            if name == "kwok":
                self._register_node()
            if name == "volume-provisioner":
                self.kubectl("apply", "-f", "-", stdin=json.dumps(storage_class()))
            # python -m devstack.*: run from this checkout
            in_repo = name in (
                "volume-provisioner",
                "odoo-standin",
                "job-runner",
                "certificate-issuer",
            )
            if name == "certificate-issuer":
                self._install_crds()  # it watches Certificates: their CRD comes first
            cwd = REPO_ROOT if in_repo else self.layout.home
            wanted = processes.launch_argv(commands[name], cwd=cwd)
            running = processes.pid_of(self.layout, name) is not None
            if running and processes.started_with(self.layout, name) != wanted:
                # Other flags, or another checkout's code: `up` converges to this one's.
                processes.stop(self.layout, name)
            if processes.pid_of(self.layout, name) is None:
                for port in self._ports(name):
                    processes.ensure_port_free(port, name)
                if name == "job-runner":  # written anew once it lists pods
                    (self.layout.data / "jobs" / JOB_RUNNER_READY).unlink(missing_ok=True)
                if name == "certificate-issuer":  # written anew once it lists Certificates
                    (self.layout.data / "issuer" / ISSUER_READY).unlink(missing_ok=True)
                processes.start(self.layout, name, commands[name], cwd=cwd)
            if not processes.wait_until(lambda n=name: self._probe(n)[0], 120):  # type: ignore[misc]
                raise processes.StackError(
                    f"{name} did not become healthy: {self._probe(name)[1]}\n"
                    f"{processes.log_tail(self.layout, name)}"
                )
        # The tenant namespace as deploy/ makes it: Pod Security `restricted`, deny by default.
        for manifest in (
            build_tenant_namespace(TENANT_NAMESPACE),
            build_default_deny(TENANT_NAMESPACE),
        ):
            self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

    def _install_crds(self) -> None:
        """KEDA's and cert-manager's CRDs, so deploy/'s ScaledObjects and the service's
        Certificates validate against this cluster."""
        for source in crds.INSTALLED:
            # Server-side: these CRDs are too large for client-side apply's annotation.
            directory = source.files()
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
            self.wait_established(source.crds)

    def wait_established(self, crds: tuple[str, ...], timeout: float = 60.0) -> None:
        """Poll until every named CRD is Established.

        Not `kubectl wait --for=condition=Established`: on a CRD created a moment earlier, whose
        status has no conditions yet, that fails at once (`.status.conditions accessor error:
        <nil>`) instead of waiting, which stopped the first `up` on a new machine.
        """
        pending = set(crds)

        def established() -> bool:
            for name in sorted(pending):
                found = self.kubectl("get", "crd", name, "-o", "json", "--ignore-not-found")
                if not found.strip():
                    continue  # not created yet (another client is about to)
                crd = json.loads(found)
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    pending.discard(name)
            return not pending

        if not processes.wait_until(established, timeout, interval=0.2):
            raise processes.StackError(
                f"CRDs not Established after {timeout:g} s: {', '.join(sorted(pending))}"
            )

    def _register_node(self) -> None:
        node = _fake_node()
        self.kubectl("apply", "-f", "-", stdin=json.dumps(node))
        # An update ignores `status`: a node registered by an older devstack gets its capacity
        # through the status subresource.
        status = json.dumps({"status": node["status"]})
        self.kubectl(
            "patch", "node", NODE_NAME, "--subresource=status", "--type=merge", "-p", status
        )

    def down(self) -> None:
        """Stop in reverse order of start."""
        for name in reversed(PROCESSES):
            processes.stop(self.layout, name)

    def health(self) -> list[Health]:
        """Probe every process."""
        report = []
        for name in PROCESSES:
            running = processes.pid_of(self.layout, name) is not None
            healthy, detail = self._probe(name) if running else (False, "not running")
            report.append(Health(name, running and healthy, detail))
        return report


def _fake_node() -> dict[str, object]:
    """A node kwok manages: no taint, so ordinary pods schedule onto it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/16"},
        "status": {
            # Room for benchmarks: 400 Odoo pods at the 500m / 1 GiB they request.
            "allocatable": {"cpu": "200", "memory": "512Gi", "pods": "500"},
            "capacity": {"cpu": "200", "memory": "512Gi", "pods": "500"},
        },
    }
