"""What every part of the local stack offers: start, stop, and a health report."""

from dataclasses import dataclass
from typing import Protocol

from devstack.gobuild import GoBuild


@dataclass(frozen=True)
class Health:
    """One line of `devstack status`."""

    name: str
    healthy: bool
    detail: str


class Component(Protocol):
    """A part of the stack; `up` and `down` are idempotent."""

    name: str

    @property
    def builds(self) -> tuple[GoBuild, ...]:
        """What must be built before it starts (Go commands; none for Debian's packages)."""

    def up(self) -> None:
        """Start (if needed), wait until healthy, and configure."""

    def down(self) -> None:
        """Stop and leave no process behind."""

    def health(self) -> list[Health]:
        """Report on each process of the component."""
