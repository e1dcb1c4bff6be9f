"""A backup cut short anywhere leaves no object that looks complete, and its command is answered
once: the Job's process killed (kill -9) mid-upload, the consumer killed while it waits for that
Job, and the object storage restarted mid-upload. Through the bus, on the real stack: the Job
runs `instance-service job backup` on this host (the job runner plays the kubelet), the uploads
go to the real SeaweedFS.
"""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack import credentials
from devstack.layout import default_layout
from devstack.seaweedfs import SeaweedFS
from k8s.spec import INSTANCE_LABEL
from messages.job_reports import EXIT_KILLED
from tests.handlers.checks import filestore, objects_of, stored_object, unfinished_uploads
from tests.handlers.consume_process import ConsumeProcess
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data

pytestmark = [pytest.mark.fault, pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."
DATA_MIB = 96
"""Enough data that the upload takes several parts (16 MiB each) and a moment."""


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    files = filestore(driver, instance_id) / "aa"
    files.mkdir(parents=True, exist_ok=True)
    for number in range(DATA_MIB // 8):
        (files / f"attachment-{number}").write_bytes(os.urandom(8 * 1024 * 1024))
    return instance_id


def _until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _job_processes(backup_id: str) -> list[int]:
    """The host processes the job runner started for the backup (its object's key names it)."""
    found = subprocess.run(
        ["pgrep", "-f", f"job backup .*{backup_id}"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def _backup_jobs(driver: Lifecycle, instance_id: str) -> list[Any]:
    selector = f"{INSTANCE_LABEL}={instance_id},app.kubernetes.io/component=backup"
    jobs = client.BatchV1Api(driver.api).list_namespaced_job(
        driver.namespace, label_selector=selector
    )
    return list(jobs.items)


def _attempt_codes(driver: Lifecycle, job: Any) -> list[int]:
    pods: Any = client.CoreV1Api(driver.api).list_namespaced_pod(
        driver.namespace, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}"
    )
    ordered = sorted(pods.items, key=lambda pod: pod.metadata.creation_timestamp)
    return [int(p.status.container_statuses[0].state.terminated.exit_code) for p in ordered]


def _answered_once(driver: Lifecycle, instance_id: str, backup_id: str, command_id: str) -> None:
    event = driver.terminal(command_id, timeout=300)
    assert event_kind(event) == "backed_up", event["data"]
    key = event["data"]["location"]["key"]
    assert objects_of(driver, instance_id) == [key]  # one object: the finished one
    assert unfinished_uploads(driver, instance_id) == []  # the cut one aborted by the service
    (record,) = driver.ledger.backups(instance_id)
    assert record.id == backup_id
    assert len(stored_object(driver, record.location)) == event["data"]["size_bytes"]
    assert len(_backup_jobs(driver, instance_id)) == 1  # one Job per backup


def test_the_jobs_process_killed_mid_upload_is_run_again_and_answered_once(
    driver: Lifecycle,
) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    command_id = driver.send(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    _until(lambda: unfinished_uploads(driver, instance_id), "the upload began")
    (pid,) = _until(lambda: _job_processes(backup_id), "the Job's process")
    os.kill(pid, signal.SIGKILL)
    # Nothing that looks like a backup: the parts sent are no object.
    assert objects_of(driver, instance_id) == []

    _answered_once(driver, instance_id, backup_id, command_id)
    (job,) = _backup_jobs(driver, instance_id)
    assert _attempt_codes(driver, job) == [EXIT_KILLED, 0]  # run again by the Job controller


@pytest.fixture
def consumer_process(driver: Lifecycle, tmp_path: Path) -> Iterator[ConsumeProcess]:
    """The test's consumer as a process of its own (the in-process one stopped)."""
    driver.stop()
    process = ConsumeProcess.for_test(
        driver.amqp_url,
        driver.engine.url.render_as_string(hide_password=False),
        driver.namespace,
        tmp_path / "logs",
    )
    process.start()
    yield process
    process.close()


def test_the_consumer_killed_while_it_waits_for_the_job_resumes_and_answers_once(
    driver: Lifecycle, consumer_process: ConsumeProcess
) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    command_id = driver.send(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    _until(lambda: unfinished_uploads(driver, instance_id), "the upload began")
    consumer_process.kill()  # its delivery goes back to the queue; the Job goes on
    consumer_process.start()

    _answered_once(driver, instance_id, backup_id, command_id)
    (job,) = _backup_jobs(driver, instance_id)
    assert _attempt_codes(driver, job) == [0]  # the Job ran once, waited for twice


def test_the_object_storage_restarted_mid_upload_leaves_one_object(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    backup_id = str(uuid.uuid4())
    layout = default_layout()
    storage = SeaweedFS(layout, credentials.load_or_create(layout))
    command_id = driver.send(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    _until(lambda: unfinished_uploads(driver, instance_id), "the upload began")
    storage.down()
    try:
        time.sleep(3)
    finally:
        storage.up()

    _answered_once(driver, instance_id, backup_id, command_id)
    (job,) = _backup_jobs(driver, instance_id)
    codes = _attempt_codes(driver, job)
    # The client's own retries may ride the restart out; if not, the Job ran again.
    assert codes in ([0], [75, 0]), codes
    print(f"object storage restarted mid-upload: attempts exited {codes}")
