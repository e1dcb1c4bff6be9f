"""One instance shape from the store to the builders: a provision and its stored row map alike."""

import json
from dataclasses import fields, replace

from handlers.specs import instance_spec
from k8s.spec import InstanceSpec
from messages.amqp import AmqpProperties
from messages.commands import ProvisionCommand
from messages.examples import INSTANCE_ID, command_example
from messages.parsing import parse_command
from store.instances import instance_record, new_instance
from store.lifecycle import InstanceStatus
from store.records import InstanceShape


def _provision() -> ProvisionCommand:
    document = command_example("odoo.instance.provision.v1")
    command = parse_command(json.dumps(document).encode(), AmqpProperties())
    assert isinstance(command, ProvisionCommand)
    return command


def test_a_provision_maps_to_the_spec_it_asks_for() -> None:
    spec = instance_spec(InstanceShape.asked(_provision().data))
    assert spec == InstanceSpec(
        instance_id=INSTANCE_ID,
        customer_id="cus_4711",
        subdomain="acme",
        odoo_version="17.0",
        cpu_millicores=1000,
        memory_mib=2048,
        storage_gib=20,
        demo_data=False,
        language="en_US",
        admin_email="it@acme.example",
        modules=("sale_management", "crm"),
    )


def test_the_stored_instance_has_the_shape_its_provision_asked_for() -> None:
    command = _provision()
    record = instance_record(new_instance(command))
    asked = InstanceShape.asked(command.data)
    shape = {field.name: getattr(record, field.name) for field in fields(InstanceShape)}
    assert InstanceShape(**shape) == asked
    assert record.status is InstanceStatus.PROVISIONING
    assert instance_spec(record) == instance_spec(asked)


def test_a_stored_instance_keeps_its_current_version_and_plan() -> None:
    row = new_instance(_provision())
    row.odoo_version, row.storage_gib = "18.0", 40
    spec = instance_spec(instance_record(row))
    assert (spec.odoo_version, spec.storage_gib, spec.language) == ("18.0", 40, "en_US")


def test_a_row_without_provision_options_gets_the_defaults() -> None:
    row = new_instance(_provision())
    row.spec = {}
    record = instance_record(row)
    assert (record.demo_data, record.language, record.admin_email, record.modules) == (
        False,
        None,
        None,
        (),
    )
    assert record.neutralized is False


def test_a_stored_neutralized_copy_reaches_the_builders_as_one() -> None:
    row = new_instance(_provision())
    row.spec = {**row.spec, "neutralized": True}  # as the command that makes a copy keeps it
    assert instance_spec(instance_record(row)).neutralized is True


def test_the_mapper_fills_every_field_the_builders_take() -> None:
    stored = instance_record(new_instance(_provision()), ["erp.acme.example"])
    distinct = replace(stored, demo_data=True, neutralized=True)  # none at InstanceSpec's default
    spec = instance_spec(distinct)
    names = {field.name for field in fields(InstanceSpec)}
    shape = {field.name for field in fields(InstanceShape)} - {"id"}
    assert names == {"instance_id", "domains"} | shape  # domains: a stored instance's only
    defaults = InstanceSpec(
        instance_id="",
        customer_id="",
        subdomain="",
        odoo_version="",
        cpu_millicores=0,
        memory_mib=0,
        storage_gib=0,
    )
    assert all(getattr(spec, name) != getattr(defaults, name) for name in names)
    assert spec.domains == ("erp.acme.example",)
