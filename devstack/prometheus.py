"""Prometheus on loopback, as an operator would run it beside the service: it receives the
service's metrics over OTLP (`--web.enable-otlp-receiver`), scrapes RabbitMQ's own exporter,
and evaluates deploy/monitoring/'s alert rules. Built with promtool from the Prometheus Go
module at the version pinned in versions.env, without the cloud service discoveries
(`remove_all_sd`: a third of the build, none of it used here) and without the web UI's assets
(the API answers; the UI pages do not).

Its configuration is deploy/monitoring/prometheus.yaml (the `otlp` translation the rules are
written for, the rules, the RabbitMQ scrape) with the stack's addresses and short intervals.
"""

import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devstack import processes
from devstack.component import Health
from devstack.gobuild import GoBuild
from devstack.httpcheck import get
from devstack.layout import LOOPBACK, REPO_ROOT, Layout

NAME = "prometheus"
MONITORING = REPO_ROOT / "deploy" / "monitoring"
READY_SECONDS = 60.0
EVALUATION_SECONDS = 1
"""How often the stack's Prometheus evaluates the rules (1 m is the usual; tests wait less)."""


BUILD = GoBuild(
    NAME,
    "github.com/prometheus/prometheus",
    "PROMETHEUS_VERSION",
    ("prometheus=./cmd/prometheus", "promtool=./cmd/promtool"),
    tags="remove_all_sd",
)


def build() -> Path:
    """Build (or find cached, or wait for) prometheus and promtool; their directory."""
    return BUILD.build()


def configuration(layout: Layout) -> dict[str, Any]:
    """deploy/monitoring/prometheus.yaml, pointed at the stack."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yaml").read_text())
    config["global"] = {
        "scrape_interval": "2s",
        "evaluation_interval": f"{EVALUATION_SECONDS}s",
    }
    config["rule_files"] = [str(MONITORING / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        if job["job_name"] == "rabbitmq":
            job["static_configs"] = [
                {"targets": [f"{LOOPBACK}:{layout.ports.rabbitmq_prometheus}"]}
            ]
    return config


class Prometheus:
    """The stack's Prometheus."""

    name = NAME
    builds = (BUILD,)

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.base = layout.data / NAME
        self.url = f"http://{LOOPBACK}:{layout.ports.prometheus}"
        self.otlp_metrics_url = f"{self.url}/api/v1/otlp/v1/metrics"
        self._bin_dir: Path | None = None

    @property
    def bin_dir(self) -> Path:
        """Where prometheus and promtool are; builds them on first use."""
        if self._bin_dir is None:
            self._bin_dir = build()
        return self._bin_dir

    def _command(self) -> list[str]:
        return [
            str(self.bin_dir / "prometheus"),
            f"--config.file={self.base / 'prometheus.yaml'}",
            f"--storage.tsdb.path={self.base / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.layout.ports.prometheus}",
            "--web.enable-otlp-receiver",
            "--web.enable-lifecycle",  # POST /-/reload after the rules change
            "--log.level=warn",
        ]

    def up(self) -> None:
        """Write the configuration, start, wait until ready; reload if already running."""
        self.base.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_dump(configuration(self.layout), sort_keys=False)
        config_file = self.base / "prometheus.yaml"
        changed = not config_file.exists() or config_file.read_text() != config
        config_file.write_text(config)
        command = self._command()
        running = processes.pid_of(self.layout, NAME) is not None
        if running and processes.started_with(self.layout, NAME) != processes.launch_argv(
            command, cwd=self.base
        ):
            processes.stop(self.layout, NAME)
            running = False
        if not running:
            processes.ensure_port_free(self.layout.ports.prometheus, NAME)
            processes.start(self.layout, NAME, command, cwd=self.base)
        elif changed:
            self.reload()
        if not processes.wait_until(lambda: self._probe()[0], READY_SECONDS):
            raise processes.StackError(
                f"Prometheus did not become ready: {self._probe()[1]}\n"
                f"{processes.log_tail(self.layout, NAME)}"
            )

    def reload(self) -> None:
        """Read the configuration and rules again."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
            pass

    def _probe(self) -> tuple[bool, str]:
        url = f"{self.url}/-/ready"
        status, body = get(url)
        return status == 200, f"{url} (OTLP: {self.otlp_metrics_url})" if status == 200 else (
            f"{url}: {status} {body[-200:]}"
        )

    def down(self) -> None:
        """Stop it (its data stays for the next start)."""
        processes.stop(self.layout, NAME)

    def health(self) -> list[Health]:
        """Whether it answers ready."""
        running = processes.pid_of(self.layout, NAME) is not None
        idle = "not running" if BUILD.cached() else "not built yet"
        healthy, detail = self._probe() if running else (False, idle)
        return [Health(NAME, running and healthy, detail)]
