"""The whole scaling cycle under the real KEDA, on the local stack: deploy/'s devstack overlay
applied as a user applies it (kwok plays the consumers' pods), a backlog published, a host-side
consumer draining it in the pods' place, and the replicas of both consumer Deployments sampled
with their queues' depth once a second.

    .venv/bin/python -m bench.scaling [--png docs/scaling.png]

Prints the timeline and draws it; tests/integration/test_scaling.py runs the same cycle and
asserts what KEDA and the HPA did.
"""

import argparse
import json
import math
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from bench.stack import management, serving, vhost
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import declare_on_broker
from devstack import credentials
from devstack.controlplane import ControlPlane
from devstack.credentials import RABBITMQ_KEDA_USER
from devstack.layout import LOOPBACK, REPO_ROOT, Layout, default_layout
from handlers.results import Completed, HandlerContext, HandlerResult
from messages.amqp import OutgoingMessage
from messages.commands import AnyCommand, InstanceCommand
from messages.events import ProvisionedData, ProvisionedEvent, SecretReference
from messages.examples import command_example
from messages.publishing import build_command
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings

OVERLAY = REPO_ROOT / "deploy" / "overlays" / "devstack"
NAMESPACE = "instance-service"
QUICK, LONG = "instance-service-quick", "instance-service-long"
QUEUES = {QUICK: "instance-service.commands.quick", LONG: "instance-service.commands.long"}
KEDA_SECRET = "instance-service-keda"  # noqa: S105 - the Secret's name, not a secret
SERVICE_SECRET = "instance-service"  # noqa: S105 - the Secret's name


@dataclass(frozen=True)
class Sample:
    """One look at both Deployments and their queues."""

    seconds: float
    replicas: dict[str, int]
    depth: dict[str, int]


@dataclass
class Timeline:
    """Samples and the moments the cycle's phases began (seconds from the start)."""

    samples: list[Sample] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)

    def first(self, condition: Callable[[Sample], bool], after: float = 0.0) -> float | None:
        """The time of the first sample at or after `after` for which `condition` holds."""
        for sample in self.samples:
            if sample.seconds >= after and condition(sample):
                return sample.seconds
        return None

    def mark(self, name: str) -> float:
        """When `name` was marked."""
        return next(seconds for seconds, what in self.marks if what == name)

    def table(self) -> str:
        """The timeline as text: one line per sample."""
        lines = ["   t/s  quick(replicas, queue)  long(replicas, queue)  phase"]
        marks = list(self.marks)
        for sample in self.samples:
            phase = ""
            while marks and marks[0][0] <= sample.seconds:
                phase = marks.pop(0)[1]
            lines.append(
                f"{sample.seconds:6.1f}  {sample.replicas[QUICK]:>8} {sample.depth[QUICK]:>6}"
                f"          {sample.replicas[LONG]:>8} {sample.depth[LONG]:>6}         {phase}"
            )
        return "\n".join(lines)


class Cycle:
    """deploy/'s devstack overlay on the local cluster, scaled by KEDA on a vhost of its own."""

    def __init__(self, api: client.ApiClient, vhost_name: str, layout: Layout | None = None):
        self.api = api
        self.vhost = vhost_name
        self.layout = layout or default_layout()
        self.cluster = ControlPlane(self.layout)
        self.apps = client.AppsV1Api(api)
        self.started = time.monotonic()
        self.timeline = Timeline()

    # -- installing ----------------------------------------------------------------------

    def manifests(self) -> list[dict[str, Any]]:
        """The overlay as kustomize renders it, its ScaledObjects measuring this vhost (as a
        user's overlay names theirs, deploy/overlays/example)."""
        rendered = self.cluster.kubectl("kustomize", str(OVERLAY))
        documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
        for document in documents:
            if document["kind"] == "ScaledObject":
                for trigger in document["spec"]["triggers"]:
                    trigger["metadata"]["vhostName"] = self.vhost
        return documents

    def install(self, amqp_url: str) -> None:
        """The two Secrets deploy/README.md asks for (the service's, KEDA's user on this vhost),
        then the overlay. KEDA reads the consumers' environment, the Secret included, to
        resolve its triggers: without the Secret it makes no HPA."""
        secrets = credentials.load_or_create(self.layout)
        found = credentials.endpoints(self.layout, secrets)
        quoted = urllib.parse.quote(self.vhost, safe="")
        management("PUT", f"permissions/{quoted}/{RABBITMQ_KEDA_USER}", _READ_NOTHING)
        ports = self.layout.ports
        host = (
            f"http://{RABBITMQ_KEDA_USER}:{secrets.rabbitmq_keda}"
            f"@{LOOPBACK}:{ports.rabbitmq_management}/{quoted}"
        )
        items = self.manifests()
        namespaces = [doc for doc in items if doc["kind"] == "Namespace"]
        self._apply(namespaces)
        service = {
            "INSTANCE_SERVICE_AMQP__URL": amqp_url,
            "INSTANCE_SERVICE_STORE__URL": found.database_url,
            "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL": found.postgres_admin_url,
        }
        made = [_secret(SERVICE_SECRET, service), _secret(KEDA_SECRET, {"host": host})]
        self._apply([*made, *[doc for doc in items if doc["kind"] != "Namespace"]])

    def uninstall(self) -> None:
        """Remove what `install` applied but the namespaces (the Deployments' pods with them)."""
        items = [doc for doc in self.manifests() if doc["kind"] != "Namespace"]
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.cluster.kubectl(
            "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=listing
        )
        self.cluster.kubectl(
            "delete", "secret", KEDA_SECRET, SERVICE_SECRET, "-n", NAMESPACE, "--ignore-not-found"
        )

    def _apply(self, items: list[dict[str, Any]]) -> None:
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=listing
        )

    # -- observing -----------------------------------------------------------------------

    def replicas(self, name: str) -> int:
        """The Deployment's wanted replicas (what KEDA and the HPA set)."""
        try:
            scale = self.apps.read_namespaced_deployment_scale(name, NAMESPACE)
        except ApiException as error:
            if error.status == 404:
                return 0
            raise
        return int(scale.spec.replicas or 0) if scale.spec is not None else 0

    def depth(self, name: str) -> int:
        """What KEDA counts: the queue's messages, ready and unacknowledged."""
        quoted = urllib.parse.quote(self.vhost, safe="")
        queue = urllib.parse.quote(QUEUES[name], safe="")
        found: dict[str, Any] = management("GET", f"queues/{quoted}/{queue}")
        return int(found.get("messages", 0))

    def sample(self) -> Sample:
        """Look once, and keep it."""
        sample = Sample(
            round(time.monotonic() - self.started, 1),
            {name: self.replicas(name) for name in QUEUES},
            {name: self.depth(name) for name in QUEUES},
        )
        self.timeline.samples.append(sample)
        return sample

    def mark(self, name: str) -> None:
        """Note the moment a phase begins."""
        self.timeline.marks.append((round(time.monotonic() - self.started, 1), name))

    def until(self, condition: Callable[[Sample], bool], timeout: float, what: str) -> Sample:
        """Sample once a second until `condition` holds; TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            sample = self.sample()
            if condition(sample):
                return sample
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout:g} s\n{self.timeline.table()}")
            time.sleep(1.0)


_READ_NOTHING = {"configure": "", "write": "", "read": ""}


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": data,
    }


# -- the cycle -----------------------------------------------------------------------------

PROVISION = "odoo.instance.provision.v1"
RESTART = "odoo.instance.restart.v1"
LONG_COMMANDS = 50
QUICK_COMMANDS = 15
PHASE_SECONDS = 180.0
"""The most any phase may take (KEDA polls every 2 s here, the HPA syncs every 5 s)."""


def _answered(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    """Answer a provision at once: the cycle measures scaling, not provisioning."""
    if not isinstance(command, InstanceCommand):
        raise TypeError(f"{command.type} is not an instance command")
    return Completed(
        ProvisionedEvent.caused_by(
            command,
            ProvisionedData(
                instance_id=command.subject,
                url="https://scaling.example",
                internal_url="http://odoo.scaling.svc.cluster.local:8069",
                odoo_version="17.0",
                credentials_secret=SecretReference(namespace="t", name="odoo-scaling"),
            ),
        )
    )


def commands(count: int, command_type: str) -> list[OutgoingMessage]:
    """`count` valid commands of this type, each for an instance of its own."""
    made = []
    for index in range(count):
        data = dict(command_example(command_type)["data"])
        data["instance_id"] = str(uuid.uuid4())
        if "subdomain" in data:
            data["subdomain"] = f"scale-{index}-{data['instance_id'][:8]}"
        made.append(build_command(command_type, data, source="/bench/scaling"))
    return made


def publish(amqp_url: str, messages: list[OutgoingMessage]) -> None:
    """Publish to the commands exchange, confirmed, as billing does."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for message in messages:
            properties = pika.BasicProperties(
                content_type=message.properties.content_type,
                delivery_mode=message.properties.delivery_mode,
                message_id=message.properties.message_id or "",
                headers=dict(message.properties.headers),
            )
            channel.basic_publish(message.exchange, message.routing_key, message.body, properties)
    finally:
        connection.close()


def _settings(queue: str) -> ConsumerSettings:
    return ConsumerSettings(health_port=0, queues=queue, relay_interval_seconds=0.1)


def run_cycle(api: client.ApiClient, amqp_url: str, vhost_name: str, engine: Engine) -> Timeline:
    """Install, idle at zero, a backlog on both queues, drain quick, drain long, idle at zero;
    the timeline of what KEDA and the HPA did meanwhile. Uninstalls at the end."""
    declare_on_broker(AmqpSettings(url=SecretStr(amqp_url)), _settings("all"))
    cycle = Cycle(api, vhost_name)
    cycle.install(amqp_url)
    try:
        cycle.mark("installed")
        cycle.until(lambda s: not any(s.replicas.values()), PHASE_SECONDS, "both at zero")
        cycle.mark("published")
        publish(amqp_url, commands(LONG_COMMANDS, PROVISION) + commands(QUICK_COMMANDS, RESTART))
        quick_max = math.ceil(QUICK_COMMANDS / 10)
        cycle.until(
            lambda s: s.replicas[LONG] == LONG_MAX and s.replicas[QUICK] == quick_max,
            PHASE_SECONDS,
            f"long at its maximum ({LONG_MAX}) and quick at {quick_max}",
        )
        cycle.mark("draining quick")
        with serving(amqp_url, engine, {PROVISION: _answered}, _settings("quick")):
            cycle.until(lambda s: s.replicas[QUICK] == 0, PHASE_SECONDS, "quick back at zero")
        cycle.mark("draining long")
        with serving(amqp_url, engine, {PROVISION: _answered}, _settings("long")):
            cycle.until(lambda s: s.replicas[LONG] == 0, PHASE_SECONDS, "long back at zero")
        cycle.mark("idle")
        for _ in range(5):  # a few more looks: nothing wakes them
            cycle.sample()
            time.sleep(1.0)
    finally:
        cycle.uninstall()
    return cycle.timeline


LONG_MAX = 4
"""The devstack overlay's maxReplicaCount of the long consumers (50 messages at 10 a replica
would be 5)."""


def draw(timeline: Timeline, path: Path) -> None:
    """Replicas (steps) and queue depth (lines) of both Deployments over time, phases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [s.seconds for s in timeline.samples]
    figure, (replicas, depth) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    for name, colour in ((QUICK, "tab:blue"), (LONG, "tab:orange")):
        label = name.removeprefix("instance-service-")
        replicas.step(seconds, [s.replicas[name] for s in timeline.samples], where="post",
                      color=colour, label=label)  # fmt: skip
        depth.plot(seconds, [s.depth[name] for s in timeline.samples], color=colour, label=label)
    for at, what in timeline.marks:
        for axis in (replicas, depth):
            axis.axvline(at, color="grey", linewidth=0.6, linestyle=":")
        replicas.annotate(what, (at, replicas.get_ylim()[1]), fontsize=7, rotation=90,
                          va="top", ha="right")  # fmt: skip
    replicas.set_ylabel("replicas (KEDA, HPA)")
    depth.set_ylabel("messages in queue")
    depth.set_xlabel("seconds")
    replicas.legend(loc="upper right")
    replicas.set_title("Consumers scaled by KEDA on the local stack (devstack overlay)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Run the cycle on a vhost of its own, print the timeline, draw it."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--png", type=Path, default=Path("scaling.png"))
    args = parser.parse_args(argv)
    layout = default_layout()
    configuration = client.Configuration()
    config.load_kube_config(str(layout.kubeconfig), client_configuration=configuration)
    with (
        tempfile.TemporaryDirectory() as state,
        client.ApiClient(configuration) as api,
        vhost("scaling") as (name, amqp_url),
    ):
        engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{state}/state.db")))
        upgrade(engine)
        timeline = run_cycle(api, amqp_url, name, engine)
        engine.dispose()
    print(timeline.table())
    draw(timeline, args.png)
    print(f"drawn: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
