"""The one error type of message parsing, carrying the contract's rejection code."""

from dataclasses import dataclass
from enum import StrEnum


class RejectionCode(StrEnum):
    """Rejection codes of the contract (`odoo.instance.command.rejected.v1`)."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    INVALID_DATA = "invalid_data"
    UNKNOWN_INSTANCE = "unknown_instance"
    NOT_ALLOWED_IN_STATE = "not_allowed_in_state"
    STALE = "stale"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class FieldProblem:
    """One field that broke a rule, and which rule."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The shape used in `error.details` of a rejection event."""
        return {"field": self.field, "message": self.message}


# Not frozen: Python and contextlib set attributes such as __traceback__ on exceptions.
@dataclass(eq=False)
class MessageRejected(Exception):  # noqa: N818 - a verdict on a message, not a program error
    """A message that cannot be accepted; `command_id`/`command_type` are set when readable."""

    code: RejectionCode
    message: str
    details: tuple[FieldProblem, ...] = ()
    command_id: str | None = None
    command_type: str | None = None

    def __str__(self) -> str:
        """Code and message, then each field problem."""
        lines = [f"{self.code}: {self.message}"]
        lines += [f"  {problem.field}: {problem.message}" for problem in self.details]
        return "\n".join(lines)

    def as_error(self) -> dict[str, object]:
        """The `error` object of a rejection event: code, message, details."""
        return {
            "code": str(self.code),
            "message": self.message,
            "details": [problem.as_dict() for problem in self.details],
        }


class RetryableError(Exception):
    """A failure that may pass: try the command again after `delay` seconds (None: the schedule's).

    Raised by any layer (Kubernetes 409/429/5xx, a busy instance, a lost connection); only the
    consumer decides what a retry means.
    """

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """A failure that will not pass by itself: the command ends as `command.failed`.

    `code` is a short machine-readable reason (e.g. `image_not_allowed`); `rolled_back` says
    whether the handler undid what it had done.
    """

    def __init__(self, code: str, message: str, *, rolled_back: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.rolled_back = rolled_back
