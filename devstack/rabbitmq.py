"""RabbitMQ from Debian's package, as a node of our own on loopback with the management plugin
(which KEDA's scaler reads) and the Prometheus plugin (which the stack's Prometheus scrapes)."""

import contextlib
import shutil
from collections.abc import Collection
from pathlib import Path

from devstack import processes
from devstack.component import Health
from devstack.credentials import (
    RABBITMQ_ADMIN_USER,
    RABBITMQ_KEDA_USER,
    RABBITMQ_SERVICE_USER,
    RABBITMQ_VHOST,
    Credentials,
)
from devstack.httpcheck import get
from devstack.layout import LOOPBACK, Layout

NAME = "rabbitmq"
NODE = "instance-service-devstack@localhost"
SBIN = Path("/usr/lib/rabbitmq/bin")  # Debian's real scripts, not the su-wrappers in /usr/sbin


class RabbitMQ:
    """One RabbitMQ node, a vhost and user for the service, and an administrator for tests."""

    name = NAME
    builds = ()

    def __init__(self, layout: Layout, credentials: Credentials) -> None:
        self.layout = layout
        self.credentials = credentials
        self.base = layout.data / "rabbitmq"

    def env(self) -> dict[str, str]:
        """The environment that points RabbitMQ's scripts at this node and its files."""
        ports = self.layout.ports
        return {
            "HOME": str(self.base),  # where the Erlang cookie lives, shared by server and ctl
            "RABBITMQ_NODENAME": NODE,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(ports.amqp),
            "RABBITMQ_DIST_PORT": str(ports.rabbitmq_distribution),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_EPMD_PORT": str(ports.epmd),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _write_config(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        ports = self.layout.ports
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {LOOPBACK}:{ports.amqp}\n"
            f"management.tcp.ip = {LOOPBACK}\n"
            f"management.tcp.port = {ports.rabbitmq_management}\n"
            # Its own metrics, per queue, for the stack's Prometheus (devstack/prometheus.py).
            f"prometheus.tcp.ip = {LOOPBACK}\n"
            f"prometheus.tcp.port = {ports.rabbitmq_prometheus}\n"
            "loopback_users.guest = true\n"
        )
        (self.base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")

    def ctl(self, *args: str, hidden: Collection[str] = ()) -> str:
        """Run rabbitmqctl against this node; `hidden` arguments are masked in its errors."""
        return processes.run(
            [str(SBIN / "rabbitmqctl"), "-n", NODE, *args],
            env=self.env(),
            what=f"rabbitmqctl {' '.join(args[:1])}",
            hidden=hidden,
        )

    def start(self) -> None:
        """Start the node (if not running) and wait until it has booted."""
        if shutil.which("erl") is None or not (SBIN / "rabbitmq-server").exists():
            raise processes.StackError(
                "RabbitMQ is not installed: run scripts/bootstrap.sh "
                "(it runs apt-get install rabbitmq-server)"
            )
        pid_file = self.base / "rabbitmq.pid"
        if processes.pid_of(self.layout, NAME) is None:
            ports = self.layout.ports
            for port in (
                ports.amqp,
                ports.rabbitmq_management,
                ports.rabbitmq_distribution,
                ports.rabbitmq_prometheus,
            ):
                processes.ensure_port_free(port, "RabbitMQ")
            self._write_config()
            pid_file.unlink(missing_ok=True)
            processes.start(
                self.layout, NAME, [str(SBIN / "rabbitmq-server")], env=self.env(), cwd=self.base
            )
        try:
            # `wait` tolerates a node that has not registered yet, unlike `await_startup`.
            self.ctl("wait", str(pid_file), "--timeout", "120")
        except processes.StackError as error:
            raise processes.StackError(
                f"RabbitMQ did not start: {error}\n{processes.log_tail(self.layout, NAME)}"
            ) from error

    def up(self) -> None:
        """Start the node and make sure the vhost and users exist with the current passwords."""
        self.start()
        users = self.ctl("list_users", "--quiet", "--no-table-headers").split()
        for user, password, tags in (
            (RABBITMQ_ADMIN_USER, self.credentials.rabbitmq_admin, "administrator"),
            (RABBITMQ_SERVICE_USER, self.credentials.rabbitmq_service, ""),
            (RABBITMQ_KEDA_USER, self.credentials.rabbitmq_keda, "monitoring"),
        ):
            self.ensure_user(user, password, tags, exists=user in users)
        if RABBITMQ_VHOST not in self.ctl("list_vhosts", "--quiet", "--no-table-headers").split():
            self.ctl("add_vhost", RABBITMQ_VHOST)
        for user in (RABBITMQ_ADMIN_USER, RABBITMQ_SERVICE_USER):
            self.ctl("set_permissions", "-p", RABBITMQ_VHOST, user, ".*", ".*", ".*")
        # KEDA only reads queue lengths: access to the vhost, no permission on its resources.
        self.ctl("set_permissions", "-p", RABBITMQ_VHOST, RABBITMQ_KEDA_USER, "", "", "")

    def ensure_user(self, user: str, password: str, tags: str, *, exists: bool) -> None:
        """Create the user, or set its password, and set its tags.

        `--` ends the options: a password starting with `-` (an older stack's credentials file
        may hold one) would otherwise be read as options and refused.
        """
        verb = "change_password" if exists else "add_user"
        self.ctl(verb, "--", user, password, hidden=(password,))
        self.ctl("set_user_tags", "--", user, *([tags] if tags else []))

    def stop(self) -> None:
        """Stop the node cleanly (messages on disk survive) and the port mapper it started."""
        if processes.pid_of(self.layout, NAME) is not None:
            with contextlib.suppress(processes.StackError):  # not answering: signalled below
                self.ctl("stop")
            processes.stop(self.layout, NAME)
        # epmd daemonises out of our process group; it exits when asked once no node is left.
        with contextlib.suppress(processes.StackError):  # no epmd running
            processes.run(
                ["epmd", "-kill"], env={"ERL_EPMD_PORT": str(self.layout.ports.epmd)}, what="epmd"
            )

    def down(self) -> None:
        """Stop the node."""
        self.stop()

    def health(self) -> list[Health]:
        """Ask the management API whether the node runs without alarms."""
        url = f"http://{LOOPBACK}:{self.layout.ports.rabbitmq_management}/api/health/checks/alarms"
        status, body = get(url, basic_auth=(RABBITMQ_ADMIN_USER, self.credentials.rabbitmq_admin))
        healthy = status == 200
        detail = f"amqp://{LOOPBACK}:{self.layout.ports.amqp}/{RABBITMQ_VHOST}, management {url}"
        return [Health(NAME, healthy, detail if healthy else f"{status} {body[:200]}")]
