"""clone and import killed at every step (the kill-at-every-step harness of
tests/handlers/harness.py): each resumes where it stopped and ends with one terminal event; an
import refused after it began, killed at every step of its undoing too, leaves nothing behind.

Each test runs its command once per step, killed at that step, on one source.
"""

import pytest

from k8s.settings import ImportSettings
from store.lifecycle import InstanceStatus
from tests.handlers.checks import objects_of, tenant_sql
from tests.handlers.harness import Lifecycle, event_kind, run_steps
from tests.handlers.test_clone_import import (
    _clone_data,
    _dump_of,
    _import_data,
    _left_behind,
    _manifest,
    _source,
    _upload,
    _zip,
)

pytestmark = [pytest.mark.fault, pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

SERVING = ["deployment", "rollout", "health", "record"]
CLONE = [
    "source-backup",
    "credentials",
    "database",
    "objects",
    "access",
    "copy",
    "restore-job",
    "incoming-gone",
    *SERVING,
]
IMPORT = [
    "credentials",
    "database",
    "objects",
    "access",
    "copy",
    "import-job",
    "incoming-gone",
    *SERVING,
]
UNDO = [
    "undo-workload",
    "undo-workload-gone",
    "undo-exposure",
    "undo-access",
    "undo-volume",
    "undo-volume-gone",
    "undo-database",
    "undo-credentials",
]
REFUSED_IMPORT = [*IMPORT[: IMPORT.index("import-job") + 1], *UNDO]
"""An import whose archive the Job refuses: no `record`, it ends failed."""


def test_a_clone_killed_at_any_step_resumes_and_answers_once(driver: Lifecycle) -> None:
    source_id = _source(driver)
    for crash in range(len(CLONE)):
        instance_id, data = _clone_data(source_id)
        event = run_steps(driver, "clone", data, CLONE, crash)
        assert event_kind(event) == "cloned", (CLONE[crash], event)
        assert tenant_sql(driver, instance_id, "SELECT count(*) FROM clone_marker") == [(1,)]
        assert objects_of(driver, instance_id) == [], CLONE[crash]
    assert driver.instance(source_id).status is InstanceStatus.RUNNING


def test_an_import_killed_at_any_step_resumes_and_answers_once(driver: Lifecycle) -> None:
    origin = _source(driver)
    archive = _zip([("dump.sql", _dump_of(driver, origin)), ("manifest.json", _manifest())])
    key = _upload(driver, archive)
    for crash in range(len(IMPORT)):
        data = _import_data(key)
        event = run_steps(driver, "import", data, IMPORT, crash)
        assert event_kind(event) == "imported", (IMPORT[crash], event)
        instance_id = data["instance_id"]
        assert tenant_sql(driver, instance_id, "SELECT count(*) FROM clone_marker") == [(1,)]
        assert objects_of(driver, instance_id) == [], IMPORT[crash]


def test_a_refused_import_killed_at_any_step_of_its_undoing_leaves_nothing(
    driver: Lifecycle,
) -> None:
    driver.reconfigure(imports=ImportSettings(max_members=5000, max_file_mib=8))
    origin = _source(driver)
    dump = _dump_of(driver, origin) + b"\nALTER ROLE CURRENT_USER CREATEROLE;\n"
    key = _upload(driver, _zip([("dump.sql", dump), ("manifest.json", _manifest())]))
    for crash in range(len(REFUSED_IMPORT)):
        data = _import_data(key)
        event = run_steps(driver, "import", data, REFUSED_IMPORT, crash)
        assert event_kind(event) == "command.failed", (REFUSED_IMPORT[crash], event)
        assert event["data"]["error"]["code"] == "archive_invalid"
        assert event["data"]["rolled_back"] is True
        assert _left_behind(driver, data["instance_id"]) == {}, REFUSED_IMPORT[crash]
        assert driver.instance(data["instance_id"]).status is InstanceStatus.ERROR
