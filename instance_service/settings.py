"""The one settings object, read from the environment in the entry point and passed down.

Each layer owns the model of its own group; this module only composes them. Variables use the
prefix ``INSTANCE_SERVICE_`` and ``__`` between a group and its field, e.g.
``INSTANCE_SERVICE_AMQP__URL`` or ``INSTANCE_SERVICE_KUBERNETES__NAMESPACE``. Where two groups
must agree, the composition checks it: an operation's deadline outlasts the handlers' waits.
"""

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.settings import AmqpSettings, ConsumerSettings, WatcherSettings
from handlers.deadlines import healthy_bounds
from k8s.settings import KubernetesSettings, TenantSettings
from messages.settings import ContractSettings
from store.settings import OperationSettings, StoreSettings
from telemetry.settings import LogSettings


class Settings(BaseSettings):
    """Everything the service can be told, with defaults that run against the local stack."""

    model_config = SettingsConfigDict(
        env_prefix="INSTANCE_SERVICE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    amqp: AmqpSettings = Field(default_factory=AmqpSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    watcher: WatcherSettings = Field(default_factory=WatcherSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    tenants: TenantSettings = Field(default_factory=TenantSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    operations: OperationSettings = Field(default_factory=OperationSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)

    @model_validator(mode="after")
    def _deadlines_outlast_the_waits(self) -> Self:
        """A healthy operation is never cut: each type's deadline is at least its waits' sum."""
        short = [
            f"{kind}: {self.operations.deadline_for(kind):g} s < {bound:g} s"
            for kind, bound in sorted(healthy_bounds(self.kubernetes, self.tenants).items())
            if self.operations.deadline_for(kind) < bound
        ]
        if short:
            raise ValueError(
                "a healthy operation may outlast its deadline with the configured ready, "
                f"health, init and backup deadlines ({'; '.join(short)}): raise "
                "INSTANCE_SERVICE_OPERATIONS__DEADLINE_SECONDS for these types, or shorten "
                "those waits"
            )
        return self


class ContractOnlySettings(BaseSettings):
    """Just the contract group, for commands that need nothing else (schema, validate).

    Other INSTANCE_SERVICE_* variables are ignored here, so a consumer setting that is wrong
    cannot stop someone from validating a document.
    """

    model_config = SettingsConfigDict(
        env_prefix="INSTANCE_SERVICE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    contract: ContractSettings = Field(default_factory=ContractSettings)
