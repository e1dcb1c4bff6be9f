"""The InstanceSpec the manifest builders need, from a provision command or a stored instance."""

from k8s.spec import InstanceSpec
from messages.commands import ProvisionCommand
from store.records import InstanceRecord


def spec_of_provision(command: ProvisionCommand) -> InstanceSpec:
    """The instance a provision asks for."""
    data = command.data
    return InstanceSpec(
        instance_id=data.instance_id,
        customer_id=data.customer_id,
        subdomain=data.subdomain,
        odoo_version=data.odoo_version,
        cpu_millicores=data.plan.cpu_millicores,
        memory_mib=data.plan.memory_mib,
        storage_gib=data.plan.storage_gib,
        demo_data=data.demo_data,
        language=data.language,
        admin_email=data.admin_email,
        modules=tuple(data.modules),
    )


def spec_of_instance(instance: InstanceRecord) -> InstanceSpec:
    """The instance as stored: its current version and plan, the rest as provisioned."""
    asked = instance.spec
    return InstanceSpec(
        instance_id=instance.id,
        customer_id=instance.customer_id,
        subdomain=instance.subdomain,
        odoo_version=instance.odoo_version,
        cpu_millicores=instance.cpu_millicores,
        memory_mib=instance.memory_mib,
        storage_gib=instance.storage_gib,
        demo_data=bool(asked.get("demo_data", False)),
        language=asked.get("language"),
        admin_email=asked.get("admin_email"),
        modules=tuple(asked.get("modules") or ()),
    )
