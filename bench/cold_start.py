"""Cold start of a consumer, as KEDA scaling from zero sees it: process start to first command
acknowledged, and the idle consumer's memory. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.cold_start [--runs N]

Each run publishes one command to a queue nobody consumes, starts `instance-service consume`
and times, from the moment the process is spawned: the "consumer ready" log line, the
command's settling (its "dead-lettered" log line, written just before the ack: the command is
a stop of an unknown instance, so the answer is a rejection and no Kubernetes work clouds the
figure) and the arrival of its result event on the bus. Then the consumer idles for a few
seconds and its resident memory is read from /proc before it is stopped with SIGTERM. The
state store is a SQLite file migrated by a warm-up run (a pod scaled up from zero finds its
database migrated). Last, what the imports cost: `python -X importtime` of the entry point,
and the typed Kubernetes API classes, which load on first use.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import pika

from bench.stack import observer, publish, vhost
from devstack.__main__ import service_env
from devstack.layout import default_layout
from messages.publishing import build_command

IDLE_SECONDS = 3.0
WATCHED_IMPORTS = (
    "instance_service.cli",
    "kubernetes.client",
    "kubernetes.config",
    "sqlalchemy.orm",
    "psycopg",
    "pika",
    "pydantic",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics",
    "messages.parsing",
    "alembic.command",
)
TYPED_APIS = ("CoreV1Api", "AppsV1Api", "BatchV1Api", "NetworkingV1Api")
TYPED_API_SCRIPT = f"""
import time
import instance_service.cli
from kubernetes import client
start = time.perf_counter()
for name in {TYPED_APIS!r}:
    getattr(client, name)
print(time.perf_counter() - start)
"""


def _publish_stop(amqp_url: str) -> str:
    message = build_command(
        "odoo.instance.stop.v1", {"instance_id": str(uuid.uuid4())}, source="/bench"
    )
    publish(amqp_url, [message])
    return message.properties.message_id or ""


def _wait_event(amqp_url: str, queue: str, command_id: str, timeout: float) -> float | None:
    """Epoch seconds when the command's result event was received (None: not in time)."""
    end = time.monotonic() + timeout
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        while time.monotonic() < end:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.sleep(0.005)
                continue
            if json.loads(body).get("causationid") == command_id:
                return time.time()
    return None


def _rss_kib(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def one_run(env: dict[str, str], amqp_url: str, observer: str) -> dict[str, Any]:
    """Start a consumer with one command waiting; its timings and idle memory."""
    command_id = _publish_stop(amqp_url)
    lines: list[str] = []
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "instance_service", "consume"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        event_at = _wait_event(amqp_url, observer, command_id, timeout=60)
        time.sleep(IDLE_SECONDS)
        memory = _rss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        reader.join(5)
    logged: dict[str, float] = {}
    for line in lines:
        if line.startswith("{"):
            entry = json.loads(line)
            logged.setdefault(entry["message"], datetime.fromisoformat(entry["time"]).timestamp())
    if event_at is None or "dead-lettered" not in logged or code != 0:
        raise RuntimeError(f"run failed (exit {code}):\n{''.join(lines[-20:])}")
    return {
        "ready": logged["consumer ready"] - started,
        "acknowledged": logged["dead-lettered"] - started,
        "event": event_at - started,
        "rss_mib": memory["VmRSS"] / 1024,
        "peak_mib": memory["VmHWM"] / 1024,
    }


def import_costs() -> list[tuple[str, float]]:
    """What importing the entry point and its heaviest dependencies costs, each on its own in
    a fresh interpreter (`-X importtime`, cumulative), in seconds."""
    costs: dict[str, float] = {}
    for name in WATCHED_IMPORTS:
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {name}"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in result.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == name:
                costs[name] = max(costs.get(name, 0.0), int(parts[1]) / 1e6)
    return sorted(costs.items(), key=lambda item: -item[1])


def typed_api_cost() -> float:
    """Seconds the typed API classes the handlers use take to import, after the entry point
    (paid by the first command that touches Kubernetes, not by the start)."""
    result = subprocess.run(
        [sys.executable, "-c", TYPED_API_SCRIPT], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip())


def run(runs: int, out: TextIO = sys.stdout) -> dict[str, Any]:
    """`runs` cold starts after a warm-up (each printed as it ends); medians and import costs."""
    results = []
    with vhost("bench-cold") as (name, amqp_url), tempfile.TemporaryDirectory() as state:
        events = observer(amqp_url)
        env = {
            **os.environ,
            **service_env(default_layout()),
            "INSTANCE_SERVICE_AMQP__URL": amqp_url,
            "INSTANCE_SERVICE_STORE__URL": f"sqlite:///{Path(state) / 'state.db'}",
            "INSTANCE_SERVICE_CONSUMER__HEALTH_PORT": "0",
            "OTEL_SDK_DISABLED": "false",
        }
        subprocess.run(  # the topology; the warm-up run below migrates the state store
            [sys.executable, "-m", "instance_service", "declare"],
            env=env,
            check=True,
            capture_output=True,
        )
        one_run(env, amqp_url, events)
        print(f"cold start of `instance-service consume`, {runs} runs (vhost {name})", file=out)
        print(
            f"{'run':>3} {'ready s':>8} {'ack s':>8} {'event s':>8} {'RSS MiB':>8} {'peak':>6}",
            file=out,
        )
        for index in range(runs):
            result = one_run(env, amqp_url, events)
            results.append(result)
            print(
                f"{index + 1:>3} {result['ready']:>8.3f} {result['acknowledged']:>8.3f} "
                f"{result['event']:>8.3f} {result['rss_mib']:>8.1f} {result['peak_mib']:>6.1f}",
                file=out,
            )

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    return {
        "runs": results,
        "median_ready_s": median("ready"),
        "median_acknowledged_s": median("acknowledged"),
        "median_event_s": median("event"),
        "median_idle_rss_mib": median("rss_mib"),
        "imports_s": dict(import_costs()),
        "typed_api_classes_s": typed_api_cost(),
    }


def main() -> None:
    """Run the cold starts and print the table, the medians and the import costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    figures = run(parser.parse_args().runs)
    print(
        f"median: ready {figures['median_ready_s']:.3f} s, first command acknowledged "
        f"{figures['median_acknowledged_s']:.3f} s, its event received "
        f"{figures['median_event_s']:.3f} s, idle RSS {figures['median_idle_rss_mib']:.1f} MiB"
    )
    print("import time, each alone in a fresh interpreter:")
    for module, seconds in figures["imports_s"].items():
        print(f"  {module:<26} {seconds:.3f} s")
    print(
        f"typed Kubernetes API classes ({', '.join(TYPED_APIS)}): "
        f"{figures['typed_api_classes_s']:.3f} s, paid by the first command that calls the API"
    )


if __name__ == "__main__":
    main()
