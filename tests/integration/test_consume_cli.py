"""`instance-service consume` connects to the real stack, reports readiness and stops on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from devstack.credentials import RABBITMQ_SERVICE_USER
from devstack.httpcheck import get
from tests import stack
from tests.stack import backup_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.k8s]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path, amqp_url: str, health_port: int = 0) -> dict[str, str]:
    found = stack.stack_endpoints()
    return {
        **os.environ,
        "INSTANCE_SERVICE_AMQP__URL": amqp_url,
        "INSTANCE_SERVICE_KUBERNETES__KUBECONFIG": found.kubeconfig,
        "INSTANCE_SERVICE_STORE__URL": f"sqlite:///{tmp_path / 'state.db'}",
        "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL": found.postgres_admin_url,
        "INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES": '["127.0.0.1/32"]',
        "INSTANCE_SERVICE_CONSUMER__HEALTH_HOST": "127.0.0.1",
        "INSTANCE_SERVICE_CONSUMER__HEALTH_PORT": str(health_port),
        **backup_env(),
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "instance_service", *args]


def _messages(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_check_reports_every_dependency_ready_without_printing_the_password(
    tmp_path: Path, amqp_url: str
) -> None:
    result = subprocess.run(
        _command("consume", "--check"),
        env=_env(tmp_path, amqp_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entries = _messages(result.stderr)
    by_message = {entry["message"]: entry for entry in entries}
    assert by_message["state store ready"]["dialect"] == "sqlite"
    assert by_message["kubernetes ready"]["server_version"] == "v1.37.2"
    assert by_message["kubernetes ready"]["namespace"] == "odoo-tenants"
    assert "kubernetes permissions could not all be confirmed" not in by_message
    assert "***" in str(by_message["tenant postgresql ready"]["tenant_admin"])
    assert "consumer ready" in by_message
    assert (tmp_path / "state.db").exists()
    admin_password = stack.stack_endpoints().postgres_admin_url.split(":")[2].split("@")[0]
    for password in (stack.service_amqp_password(), admin_password):
        assert password not in result.stderr
        assert password not in result.stdout


def test_without_a_tenant_admin_url_it_says_which_setting_is_missing(
    tmp_path: Path, amqp_url: str
) -> None:
    env = _env(tmp_path, amqp_url)
    del env["INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL"]
    result = subprocess.run(
        _command("consume", "--check"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stderr
    assert "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL is not set" in result.stderr


def test_without_the_backup_keyset_it_says_which_setting_is_missing(
    tmp_path: Path, amqp_url: str
) -> None:
    env = _env(tmp_path, amqp_url)
    del env["INSTANCE_SERVICE_BACKUPS__KEYSET"]
    result = subprocess.run(
        _command("consume", "--check"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stderr
    assert "INSTANCE_SERVICE_BACKUPS__KEYSET not set" in result.stderr
    assert "keyset" in result.stderr


def test_serves_with_a_live_broker_connection_until_sigterm(tmp_path: Path, amqp_url: str) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    port = _free_port()
    with subprocess.Popen(
        _command("consume"),
        env=_env(tmp_path, amqp_url, health_port=port),
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if '"consumer ready"' in line:
                    break
            else:
                pytest.fail(f"consumer exited early with {process.wait()}")
            # The management API publishes connection statistics every few seconds.
            users: list[str] = []
            deadline = time.monotonic() + 20
            while not users and time.monotonic() < deadline:
                time.sleep(0.5)
                users = [c["user"] for c in stack.management_get(f"vhosts/{vhost}/connections")]
            assert users == [RABBITMQ_SERVICE_USER]
            assert get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
            assert get(f"http://127.0.0.1:{port}/livez") == (200, "ok\n")
            process.send_signal(signal.SIGTERM)
            rest = process.stderr.read()
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:  # a failed assertion must not leave it running
                process.kill()
    stopped = [e for e in _messages(rest) if e["message"] == "consumer stopped"]
    assert len(stopped) == 1
    assert stopped[0]["signal"] == "SIGTERM"


def test_wrong_broker_password_is_a_clear_error_that_hides_the_password(
    tmp_path: Path, amqp_vhost: str
) -> None:
    found = stack.stack_endpoints()
    wrong = "definitely-not-the-password"
    url = found.amqp_url_for(stack.quote(amqp_vhost), RABBITMQ_SERVICE_USER, wrong)
    result = subprocess.run(
        _command("consume", "--check"),
        env=_env(tmp_path, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 69
    errors = [e for e in _messages(result.stderr) if e["level"] == "ERROR"]
    assert len(errors) == 1
    assert "refused the credentials" in str(errors[0]["message"])
    assert wrong not in result.stderr


def test_credentials_without_the_needed_permissions_are_refused_at_start_naming_them(
    tmp_path: Path, amqp_url: str, k8s_api: client.ApiClient, namespace: str
) -> None:
    # A ServiceAccount with no Role at all: authenticated, allowed nothing in the namespace.
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="bare"))
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    answer = core.create_namespaced_service_account_token("bare", namespace, request)
    assert answer.status is not None
    token = answer.status.token
    assert token
    kubeconfig = tmp_path / "bare.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": k8s_api.configuration.host,
                            "certificate-authority": k8s_api.configuration.ssl_ca_cert,
                        },
                    }
                ],
                "users": [{"name": "bare", "user": {"token": token}}],
                "contexts": [{"name": "bare", "context": {"cluster": "local", "user": "bare"}}],
                "current-context": "bare",
            }
        )
    )
    env = {
        **_env(tmp_path, amqp_url),
        "INSTANCE_SERVICE_KUBERNETES__KUBECONFIG": str(kubeconfig),
        "INSTANCE_SERVICE_KUBERNETES__NAMESPACE": namespace,
    }
    result = subprocess.run(
        _command("consume", "--check"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 78, result.stderr
    assert f"the Kubernetes credentials lack, in namespace {namespace}:" in result.stderr
    assert "create, delete, get, patch secrets" in result.stderr
    assert "deploy/base/rbac.yaml" in result.stderr
    assert token not in result.stderr


def test_declare_sets_up_the_broker_once_and_names_a_conflict(amqp_url: str) -> None:
    env = {**os.environ, "INSTANCE_SERVICE_AMQP__URL": amqp_url}
    vhost = amqp_url.rsplit("/", 1)[1]
    for _ in range(2):  # idempotent
        result = subprocess.run(
            _command("declare"), env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "declared on amqp://instance-service:***@" in result.stdout
    queues = {q["name"]: q for q in stack.management_get(f"queues/{vhost}")}
    assert queues["instance-service.commands.quick"]["type"] == "quorum"
    assert queues["instance-service.commands.long"]["type"] == "quorum"
    assert "instance-service.dead-letter" in queues
    # The same queue name declared with other arguments: refused, and said so.
    env["INSTANCE_SERVICE_CONSUMER__DELIVERY_LIMIT"] = "7"
    result = subprocess.run(
        _command("declare"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 78
    assert "the broker refused the topology" in result.stderr
    assert "x-delivery-limit" in result.stderr


def test_watch_runs_until_sigterm_and_reports_ready(tmp_path: Path, amqp_url: str) -> None:
    port = _free_port()
    env = {
        **_env(tmp_path, amqp_url),
        "INSTANCE_SERVICE_WATCHER__HEALTH_HOST": "127.0.0.1",
        "INSTANCE_SERVICE_WATCHER__HEALTH_PORT": str(port),
    }
    with subprocess.Popen(_command("watch"), env=env, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if '"watching"' in line:
                    break
            else:
                pytest.fail(f"watch exited early with {process.wait()}")
            deadline = time.monotonic() + 20
            while get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
                assert time.monotonic() < deadline, "the watcher never became ready"
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            rest = process.stderr.read()
            assert process.wait(timeout=30) == 0
            assert '"watcher stopped"' in rest
        finally:
            if process.poll() is None:
                process.kill()
