"""What a backup, restore or import Job reports through its container's termination message.

The Job runs `instance-service job ...` (jobs/); the handler that started it reads the report
from the pod's status (`state.terminated.message`), so it works the same in any cluster. The
kubelet keeps at most 4096 bytes of a termination message: a report is far smaller.

The Job's exit status is the other half of the report, read by the Job controller itself: a
pod failure policy (k8s/data_jobs.py) runs the Job again after `EXIT_RETRY` and fails it at
once after any other failure.
"""

from typing import Literal

from pydantic import Field

from messages.envelope import Frozen

MAX_MESSAGE_BYTES = 4096

EXIT_OK = 0
EXIT_FAILED = 1
"""The data or the request is at fault: the same Job would fail the same way again."""
EXIT_RETRY = 75
"""sysexits' EX_TEMPFAIL: the database went away or refused the session for a while (a restart,
a failover, too many connections); nothing was kept, and the Job may simply run again."""

EXIT_KILLED = 137
"""128 + SIGKILL: the container was killed (out of memory, or `kill -9`) mid-work. Nothing it did
counts (an upload never completed is no object), so the Job may run again as after EXIT_RETRY."""

DATABASE_UNAVAILABLE = "database_unavailable"
"""The report's `error_code` of a Job that exits with `EXIT_RETRY`."""


class JobReport(Frozen):
    """The outcome of one Job run."""

    kind: Literal["backup", "restore", "import"]
    ok: bool
    location: str | None = Field(default=None, description="the archive, as the Job saw it")
    size_bytes: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    error_code: str | None = None
    error: str | None = Field(default=None, max_length=2000)

    def encode(self) -> bytes:
        """The termination message (JSON, within the kubelet's limit)."""
        body = self.model_dump_json(exclude_none=True).encode()
        if len(body) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a job report of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        return body
