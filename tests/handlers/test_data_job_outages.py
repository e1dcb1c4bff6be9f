"""A data Job whose database goes away mid-run runs again; one whose data is bad fails at once.

Through the bus and the real consumer. The Jobs run `instance-service job` for real (the local
stack's job runner plays the kubelet and reports the container's exit code), and the Job
controller of the local kube-controller-manager applies their pod failure policy: exit 75 (the
database went away) is another attempt after its backoff (10 s), anything else fails the Job.

The outage is the database's, made for the Job's session alone so that nothing else on the
shared stack notices (tests/session_faults.py): its session is ended mid-dump as a fast shutdown
ends it, or its database refuses sessions for a while.
"""

import hashlib
import uuid
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack.layout import default_layout
from jobs.archive import APPLICATION_BACKUP
from k8s.data_jobs import report_of
from k8s.spec import INSTANCE_LABEL
from messages.job_reports import DATABASE_UNAVAILABLE, EXIT_RETRY
from store.lifecycle import InstanceStatus
from tests import stack
from tests.handlers.checks import (
    names_of,
    replace_object,
    serving,
    stored_object,
    tenant_password,
    tenant_sql,
    unfinished_uploads,
)
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data
from tests.integration.kube_wait import watch_until
from tests.session_faults import end_session_waiting, table_locked

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    tenant_sql(driver, instance_id, "CREATE TABLE partner (id int PRIMARY KEY, name text)")
    tenant_sql(driver, instance_id, "INSERT INTO partner VALUES (1, 'Azure'), (2, 'Deco')")
    return instance_id


def _as_tenant(driver: Lifecycle, instance_id: str) -> str:
    names = names_of(instance_id)
    return make_conninfo(
        host="127.0.0.1",
        port=default_layout().ports.postgres,
        dbname=names.database,
        user=names.role,
        password=tenant_password(driver, instance_id),
    )


def _jobs(driver: Lifecycle, instance_id: str, component: str) -> list[Any]:
    batch = client.BatchV1Api(driver.api)
    selector = f"{INSTANCE_LABEL}={instance_id},app.kubernetes.io/component={component}"
    return list(batch.list_namespaced_job(driver.namespace, label_selector=selector).items)


def _attempts(driver: Lifecycle, job: Any) -> list[Any]:
    """The Job's pods, oldest first."""
    core = client.CoreV1Api(driver.api)
    selector = f"batch.kubernetes.io/job-name={job.metadata.name}"
    pods = core.list_namespaced_pod(driver.namespace, label_selector=selector).items
    return sorted(pods, key=lambda pod: pod.metadata.creation_timestamp)


def _exit_code(pod: Any) -> int:
    return int(pod.status.container_statuses[0].state.terminated.exit_code)


def _archive_sha256(driver: Lifecycle, location: str) -> str:
    return hashlib.sha256(stored_object(driver, location)).hexdigest()


def _one_backup_taken_on_the_second_attempt(
    driver: Lifecycle, instance_id: str, backup_id: str, event: dict[str, Any]
) -> Any:
    """The checks both outages share; returns the failed attempt's pod."""
    assert event_kind(event) == "backed_up", event
    assert [b.id for b in driver.ledger.backups(instance_id)] == [backup_id]
    stored = driver.ledger.backup(backup_id)
    assert stored is not None
    assert event["data"]["sha256"] == stored.sha256 == _archive_sha256(driver, stored.location)
    assert unfinished_uploads(driver, instance_id) == []
    (job,) = _jobs(driver, instance_id, "backup")  # one Job per backup, however many attempts
    assert (job.status.failed, job.status.succeeded) == (1, 1)
    failed, succeeded = _attempts(driver, job)
    assert (_exit_code(failed), _exit_code(succeeded)) == (EXIT_RETRY, 0)
    lost = report_of([failed])
    assert lost is not None
    assert lost.error_code == DATABASE_UNAVAILABLE
    assert driver.instance(instance_id).status == InstanceStatus.RUNNING
    assert serving(driver, instance_id)
    return failed


def test_a_backup_whose_database_goes_away_mid_dump_is_taken_by_the_next_attempt(
    driver: Lifecycle,
) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    admin_url = stack.require("postgres").postgres_admin_url
    with table_locked(_as_tenant(driver, instance_id), "partner"):
        command_id = driver.send(
            f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id}
        )
        ended = end_session_waiting(admin_url, names_of(instance_id).database)
    assert ended.query.startswith("LOCK TABLE")  # pg_dump was connected, in its snapshot

    event = driver.terminal(command_id)
    failed = _one_backup_taken_on_the_second_attempt(driver, instance_id, backup_id, event)
    lost = report_of([failed])
    assert lost is not None
    assert lost.error is not None
    assert "terminating connection due to administrator command" in lost.error
    assert ended.application == APPLICATION_BACKUP


def test_a_backup_whose_database_refuses_sessions_for_a_while_is_taken_by_the_next_attempt(
    driver: Lifecycle,
) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    database = names_of(instance_id).database
    limit = sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}")
    with psycopg.connect(_as_tenant(driver, instance_id), autocommit=True) as owner:
        # As a database at its connection limit answers: FATAL 53300, until a slot frees.
        owner.execute(limit.format(sql.Identifier(database), sql.Literal(0)))
        try:
            command_id = driver.send(
                f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id}
            )
            watch_until(
                client.BatchV1Api(driver.api).list_namespaced_job,
                driver.namespace,
                lambda job: (job.status.failed or 0) >= 1,
                label_selector=f"{INSTANCE_LABEL}={instance_id},app.kubernetes.io/component=backup",
            )
        finally:
            owner.execute(limit.format(sql.Identifier(database), sql.Literal(-1)))

    event = driver.terminal(command_id)
    failed = _one_backup_taken_on_the_second_attempt(driver, instance_id, backup_id, event)
    lost = report_of([failed])
    assert lost is not None
    assert lost.error is not None
    assert "too many connections" in lost.error


def test_a_restore_of_a_corrupt_archive_fails_at_once_without_another_attempt(
    driver: Lifecycle,
) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    backed_up = driver.run(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    assert event_kind(backed_up) == "backed_up", backed_up
    stored = driver.ledger.backup(backup_id)
    assert stored is not None
    replace_object(driver, stored.location, stored_object(driver, stored.location) + b"bit rot")

    command_id = driver.send(f"{T}restore.v1", {"instance_id": instance_id, "backup_id": backup_id})
    failed = driver.terminal(command_id)
    assert event_kind(failed) == "command.failed", failed
    assert failed["data"]["error"]["code"] == "restore_failed"
    assert "backup_invalid" in failed["data"]["error"]["message"]
    assert "attempts" not in failed["data"]["error"]["message"]
    assert failed["data"]["rolled_back"] is True
    (job,) = _jobs(driver, instance_id, "restore")
    (attempt,) = _attempts(driver, job)
    assert _exit_code(attempt) == 1
    assert (job.status.failed or 0, job.status.succeeded or 0) == (1, 0)
    reasons = [c.reason for c in job.status.conditions if c.type == "Failed" and c.status == "True"]
    # Failed by the policy at its first failure (a finished Job starts no other pod), not by
    # running out of attempts.
    assert reasons == ["PodFailurePolicy"]
    assert serving(driver, instance_id)
