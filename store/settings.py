"""Settings of the state store and of its operations' deadlines, groups of the settings."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class StoreSettings(BaseModel):
    """Where the service keeps its own state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An embedded SQLite file by default, so a first run needs no database server.
    url: SecretStr = Field(
        default=SecretStr("sqlite:///instance-service.db"),
        description="SQLAlchemy URL: sqlite:///file.db or postgresql://user:pw@host/db",
    )
    tenant_admin_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the admin role that creates and drops tenant roles and "
        "databases (postgresql://user:pw@host:port/postgres); provision and delete need it",
    )
    upgrade_on_start: bool = Field(
        default=True, description="run the schema migrations when the consumer starts"
    )
    pool_size: int = Field(default=10, ge=1, le=200, description="PostgreSQL connections kept")


HOUR = 3600.0


class OperationSettings(BaseModel):
    """How long an operation may stay open before the watcher's watchdog steps in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deadline_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="command type -> seconds its operation may stay open, written on the "
        "operation when it begins; types not named keep their declared default (each "
        "command's transition: handlers/<command>.py)",
    )
    resumes: int = Field(
        default=1,
        ge=0,
        le=10,
        description="times an operation past its deadline is resumed (its command published "
        "again) before it is failed as operation_timed_out",
    )
    sweep_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="how often the watcher looks for such operations"
    )

    @field_validator("deadline_seconds")
    @classmethod
    def _within_a_week(cls, deadlines: dict[str, float]) -> dict[str, float]:
        # Which types open an operation only the command catalog knows: the service's settings
        # check the names against it (instance_service/settings.py).
        wrong = sorted(kind for kind, seconds in deadlines.items() if not 0 < seconds <= 7 * 86400)
        if wrong:
            raise ValueError(f"a deadline lies between 0 and 7 days: {', '.join(wrong)}")
        return deadlines


class RetentionSettings(BaseModel):
    """How long backups other than the scheduled ones are kept (store/retention.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manual_keep_days: int = Field(
        default=90,
        ge=0,
        le=3650,
        description="days a backup taken by a command (backup, and the safety backups of "
        "restore and upgrade) is kept; 0: until its instance is deleted",
    )
    final_backup_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="days every backup of a deleted instance, its final backup among them, is "
        "kept after the delete",
    )
