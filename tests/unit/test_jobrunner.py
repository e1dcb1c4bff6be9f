"""The devstack job runner: its path mapping (what a kubelet's bind mounts do, as rewriting),
and its patience with an API server that does not answer."""

from pathlib import Path

import pytest
import urllib3
from kubernetes import client

from devstack.jobrunner import patiently, translate
from devstack.kwok_stages import SERVICE_NAME, stages
from k8s.data_jobs import SERVICE_NAME as JOB_POD_NAME

MOUNTS = {
    "/var/lib/odoo": Path("/host/volumes/data-1"),
    "/backups": Path("/host/volumes/backups-2"),
    "/dev/termination-log": Path("/host/jobs/uid/termination-log"),
}


def test_paths_under_a_mount_become_host_paths() -> None:
    assert translate("/backups/abc/id.tar", MOUNTS) == "/host/volumes/backups-2/abc/id.tar"
    assert translate("/var/lib/odoo/filestore/db", MOUNTS) == "/host/volumes/data-1/filestore/db"
    assert translate("/dev/termination-log", MOUNTS) == "/host/jobs/uid/termination-log"


def test_other_values_are_left_alone() -> None:
    assert translate("/var/lib/odoo2/x", MOUNTS) == "/var/lib/odoo2/x"
    assert translate("odoo_0b8f", MOUNTS) == "odoo_0b8f"
    assert translate("127.0.0.1", MOUNTS) == "127.0.0.1"


def test_kwok_leaves_the_service_job_pods_to_the_runner() -> None:
    assert SERVICE_NAME == JOB_POD_NAME
    excluded = [
        stage["metadata"]["name"]
        for stage in stages()
        if any(
            e["operator"] == "NotIn" and e["values"] == [SERVICE_NAME]
            for e in stage["spec"]["selector"]["matchExpressions"]
        )
    ]
    assert excluded == [
        "devstack-pod-ready",
        "devstack-pod-never-ready",
        "devstack-pod-complete",
        "devstack-job-pod-fails",
    ]


def test_a_call_the_api_server_did_not_answer_is_made_again() -> None:
    answers: list[Exception | str] = [
        urllib3.exceptions.MaxRetryError(None, "/", "connection refused"),  # type: ignore[arg-type]
        client.ApiException(status=503),
        "patched",
    ]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert patiently(call, "status") == "patched"
    assert answers == []


def test_an_answer_of_no_is_not_asked_again() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise client.ApiException(status=404)

    with pytest.raises(client.ApiException):
        patiently(call, "status")
    assert calls == [1]
