"""The one settings object, read from the environment in the entry point and passed down.

Each layer owns the model of its own group; this module only composes them. Variables use the
prefix ``INSTANCE_SERVICE_`` and ``__`` between a group and its field, e.g.
``INSTANCE_SERVICE_AMQP__URL`` or ``INSTANCE_SERVICE_KUBERNETES__NAMESPACE``. Where two groups
must agree, the composition checks it: an operation's deadline outlasts the handlers' waits.
"""

from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.settings import AmqpSettings, ConsumerSettings, WatcherSettings
from handlers.catalog import command_catalog
from handlers.deadlines import Waits
from k8s.settings import DomainSettings, ImportSettings, KubernetesSettings, TenantSettings
from messages.settings import ContractSettings
from objectstore.settings import ObjectStorageSettings
from store.settings import OperationSettings, RetentionSettings, StoreSettings
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
    backups: ObjectStorageSettings = Field(default_factory=ObjectStorageSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    domains: DomainSettings = Field(default_factory=DomainSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    operations: OperationSettings = Field(default_factory=OperationSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)

    @model_validator(mode="before")
    @classmethod
    def _base_domain_is_a_platform_domain(cls, data: Any) -> Any:
        """A customer's domain under the tenants' base domain is refused at the edge, however
        `contract.platform_domains` is set (the one rule two groups share)."""
        if not isinstance(data, dict):
            return data
        tenants = data.get("tenants")
        if not isinstance(tenants, TenantSettings):
            tenants = TenantSettings.model_validate(tenants or {})
        contract = data.get("contract")
        if not isinstance(contract, ContractSettings):
            contract = ContractSettings.model_validate(contract or {})
        if tenants.base_domain not in contract.platform_domains:
            domains = (*contract.platform_domains, tenants.base_domain)
            contract = contract.model_copy(update={"platform_domains": domains})
        return {**data, "tenants": tenants, "contract": contract}

    @model_validator(mode="after")
    def _deadlines_outlast_the_waits(self) -> Self:
        """Deadlines name commands that open operations, and never cut a healthy one: each
        type's deadline is at least its waits' sum (its declaration's `healthy_within`)."""
        catalog = command_catalog()
        machine = catalog.status_machine
        unknown = sorted(set(self.operations.deadline_seconds) - set(machine.transitions))
        if unknown:
            raise ValueError(
                f"not a command type that opens an operation: {', '.join(unknown)} "
                f"(one of {', '.join(sorted(machine.transitions))})"
            )
        bounds = catalog.healthy_bounds(Waits.of(self.kubernetes, self.tenants, self.domains))
        short = [
            f"{kind}: {machine.deadline(kind, self.operations):g} s < {bound:g} s"
            for kind, bound in sorted(bounds.items())
            if machine.deadline(kind, self.operations) < bound
        ]
        if short:
            raise ValueError(
                "a healthy operation may outlast its deadline with the configured ready, "
                f"health, init, backup and certificate deadlines ({'; '.join(short)}): raise "
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
