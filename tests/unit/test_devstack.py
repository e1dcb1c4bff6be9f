"""The local stack's own logic: pinned versions, generated credentials and masked URLs."""

import json
import stat
import subprocess
from pathlib import Path

import pytest

from devstack import credentials, processes
from devstack.layout import Layout, default_layout, read_versions


def test_versions_are_pinned_in_one_file() -> None:
    versions = read_versions()
    assert set(versions) == {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "KEDA_VERSION",
        "CERT_MANAGER_VERSION",
        "CYCLONUS_VERSION",
        "SEAWEEDFS_VERSION",
        "PROMETHEUS_VERSION",
    }
    assert all(value.startswith("v") for value in versions.values())


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path / "stack")
    first = credentials.load_or_create(layout)
    again = credentials.load_or_create(layout)
    assert first == again
    assert len({first.rabbitmq_admin, first.rabbitmq_service, first.postgres_admin}) == 3
    assert stat.S_IMODE(layout.credentials.stat().st_mode) == 0o600


def test_generated_passwords_are_letters_and_digits(tmp_path: Path) -> None:
    # A password starting with `-` made rabbitmqctl read it as options and `devstack up` fail.
    made = credentials.load_or_create(Layout(home=tmp_path))
    passwords = [made.rabbitmq_admin, made.rabbitmq_service, made.rabbitmq_keda]
    passwords += [made.postgres_admin, made.postgres_service, made.s3_admin]
    passwords += [credentials.GENERATORS["rabbitmq_keda"]() for _ in range(500)]
    assert all(len(password) == credentials.PASSWORD_LENGTH for password in passwords)
    assert set("".join(passwords)) <= set(credentials.PASSWORD_ALPHABET)
    assert "-" not in credentials.PASSWORD_ALPHABET


def test_a_failing_command_shows_its_output_with_the_hidden_arguments_masked() -> None:
    # sh echoes its arguments and stdin to stderr, as rabbitmqctl and psql do when they refuse.
    secret = "-Secret0therwise-in-the-log"
    with pytest.raises(processes.StackError) as failed:
        processes.run(
            ["sh", "-c", 'echo "refused: $0 $1"; cat; exit 64', "add_user", secret],
            stdin=f"PASSWORD '{secret}'",
            what="tool add_user",
            hidden=(secret,),
        )
    message = str(failed.value)
    assert secret not in message
    assert message.startswith("tool add_user failed (exit 64): refused: add_user <hidden>")
    assert "PASSWORD '<hidden>'" in message


def test_a_command_timing_out_does_not_show_hidden_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "Secret0timed0out"

    def too_slow(argv: list[str], **_: object) -> None:
        raise subprocess.TimeoutExpired(argv, 180)

    monkeypatch.setattr(subprocess, "run", too_slow)
    with pytest.raises(processes.StackError) as failed:
        processes.run(["tool", "change_password", secret], what="tool", hidden=(secret,))
    assert "timed out" in str(failed.value)
    assert secret not in str(failed.value)
    assert failed.value.__suppress_context__


def test_a_credential_added_later_is_made_for_a_stack_made_before_it(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path / "stack")
    first = credentials.load_or_create(layout)
    older = json.loads(layout.credentials.read_text())
    del older["s3_admin"], older["backup_keyset"]  # as a stack of an earlier release wrote it
    layout.credentials.write_text(json.dumps(older))
    upgraded = credentials.load_or_create(layout)
    assert upgraded.rabbitmq_admin == first.rabbitmq_admin  # the others kept
    assert upgraded.s3_admin
    assert json.loads(upgraded.backup_keyset)["primaryKeyId"]
    assert credentials.load_or_create(layout) == upgraded  # and written back


def test_endpoints_carry_the_generated_passwords(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path)
    secrets = credentials.load_or_create(layout)
    found = credentials.endpoints(layout, secrets)
    assert found.amqp_url == (
        f"amqp://instance-service:{secrets.rabbitmq_service}@127.0.0.1:5672/instance-service"
    )
    assert found.amqp_url_for("test-1", "u", "p") == "amqp://u:p@127.0.0.1:5672/test-1"
    assert secrets.postgres_service in found.database_url
    assert found.kubeconfig == str(tmp_path / "kubeconfig")


def test_home_comes_from_devstack_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEVSTACK_HOME", str(tmp_path / "elsewhere"))
    assert default_layout().home == tmp_path / "elsewhere"
    monkeypatch.delenv("DEVSTACK_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_layout().home == tmp_path / "state" / "instance-service" / "devstack"
