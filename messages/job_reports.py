"""What a backup or restore Job reports through its container's termination message.

The Job runs `instance-service job ...` (jobs/); the handler that started it reads the report
from the pod's status (`state.terminated.message`), so it works the same in any cluster. The
kubelet keeps at most 4096 bytes of a termination message: a report is far smaller.
"""

from typing import Literal

from pydantic import Field

from messages.envelope import Frozen

MAX_MESSAGE_BYTES = 4096


class JobReport(Frozen):
    """The outcome of one Job run."""

    kind: Literal["backup", "restore"]
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
