"""Settings of the state store, one group of the service's settings."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
