"""The one mapper from an instance's shape to the InstanceSpec the manifest builders take.

A stored instance is its shape (InstanceRecord); a provision's is `InstanceShape.asked(data)`.
It lives here because k8s and store know nothing of each other.
"""

from k8s.spec import InstanceSpec
from store.records import InstanceRecord, InstanceShape


def instance_spec(instance: InstanceShape) -> InstanceSpec:
    """The instance as the builders need it."""
    return InstanceSpec(
        instance_id=instance.id,
        customer_id=instance.customer_id,
        subdomain=instance.subdomain,
        odoo_version=instance.odoo_version,
        cpu_millicores=instance.cpu_millicores,
        memory_mib=instance.memory_mib,
        storage_gib=instance.storage_gib,
        demo_data=instance.demo_data,
        language=instance.language,
        admin_email=instance.admin_email,
        modules=instance.modules,
        neutralized=instance.neutralized,
        domains=instance.domains if isinstance(instance, InstanceRecord) else (),
    )
