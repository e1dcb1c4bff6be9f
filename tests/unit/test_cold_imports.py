"""Cold start is paid by every pod KEDA scales up from zero: what the entry point imports before
its first command is kept to what every command needs. Heavy or occasional dependencies are
imported where first used, so a later issue's client (object storage, DNS) cannot grow the
start of a consumer that never calls it."""

import json
import subprocess
import sys

FIRST_USE_ONLY = (
    "kubernetes.client.api",  # the typed API classes: about 1.5 s, paid by the first API call
    "psycopg",  # only with a PostgreSQL state store
    "alembic",  # only when migrating
    "boto3",  # object storage, for off-cluster backups
    "botocore",
    "tink",  # sealing backups: only the data Jobs
    "dns",  # dnspython, for customers' own domains
    "matplotlib",  # the benchmarks' charts, never the service
    "yappi",
)


def test_the_entry_point_imports_nothing_used_only_by_some_commands() -> None:
    probe = (
        "import json, sys, instance_service.cli; print(json.dumps(sorted(m for m in sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    )
    early = sorted(
        name
        for name in loaded
        for heavy in FIRST_USE_ONLY
        if name == heavy or name.startswith(heavy + ".")
    )
    assert early == []
    assert "instance_service.cli" in loaded  # the probe did import the entry point
