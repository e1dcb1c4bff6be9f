"""Every way a command can be refused at the edge yields the contract's code and the field."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from messages.amqp import AmqpProperties
from messages.commands import ProvisionCommand
from messages.envelope import MAX_BODY_BYTES
from messages.errors import MessageRejected, RejectionCode
from messages.examples import command_example
from messages.parsing import parse_command
from messages.settings import Bounds, ContractSettings
from tests.unit.messages.documents import INSTANCE_ID, encode, provision

Mutation = Callable[[dict[str, Any]], None]


def _reject(body: bytes, properties: AmqpProperties | None = None) -> MessageRejected:
    with pytest.raises(MessageRejected) as raised:
        parse_command(body, properties or AmqpProperties())
    return raised.value


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json at all", "not JSON"),
        (b'{"id": "x",', "not JSON"),
        (b"", "not JSON"),
        (b'\xff\xfe{"id": 1}', "not valid UTF-8 (byte 0)"),
        (b'{"id": "caf\xc3"}', "not valid UTF-8"),
        (b'{"id": "a", "id": "b"}', "duplicate key 'id'"),
        (b'{"data": {"x": 1, "x": 2}}', "duplicate key 'x'"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b'"text"', "a JSON str, not an object"),
        (b"null", "a JSON NoneType, not an object"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": Infinity}', "Infinity is not JSON"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nesting deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting deeper than 32"),
    ],
)
def test_malformed(body: bytes, says: str) -> None:
    rejection = _reject(body)
    assert rejection.code is RejectionCode.MALFORMED
    assert says in rejection.message


def test_malformed_content_type_keeps_the_readable_ids() -> None:
    rejection = _reject(encode(provision()), AmqpProperties(content_type="text/plain"))
    assert rejection.code is RejectionCode.MALFORMED
    assert "content_type 'text/plain'" in rejection.message
    assert rejection.command_id == "provision-7f3a9c21"
    assert rejection.command_type == "odoo.instance.provision.v1"


def test_too_large_is_decided_before_parsing() -> None:
    # Not even JSON: the size check must come first.
    rejection = _reject(b"x" * (MAX_BODY_BYTES + 1))
    assert rejection.code is RejectionCode.TOO_LARGE
    assert f"{MAX_BODY_BYTES + 1} bytes" in rejection.message


def test_a_body_of_exactly_the_limit_is_not_too_large() -> None:
    document = provision()
    padding = MAX_BODY_BYTES - len(encode({**document, "data": {**document["data"], "z": ""}}))
    document["data"]["z"] = "a" * padding
    body = encode(document)
    assert len(body) == MAX_BODY_BYTES
    assert _reject(body).code is RejectionCode.INVALID_DATA  # judged on content, not size


@pytest.mark.parametrize(
    "message_type",
    ["odoo.instance.explode.v1", "odoo.instance.provision.v2", "odoo.instance.provisioned.v1", ""],
)
def test_unsupported_type(message_type: str) -> None:
    document = {**provision(), "type": message_type}
    rejection = _reject(encode(document))
    assert rejection.code is RejectionCode.UNSUPPORTED_TYPE
    assert rejection.command_id == "provision-7f3a9c21"


@pytest.mark.parametrize("message_type", [42, None, ["odoo.instance.start.v1"], {"a": 1}])
def test_unsupported_type_that_is_not_a_string(message_type: object) -> None:
    rejection = _reject(encode({**provision(), "type": message_type}))
    assert rejection.code is RejectionCode.UNSUPPORTED_TYPE
    assert rejection.command_type is None


def _set(path: str, value: object) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node[part]
        node[leaf] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node[part]
        del node[leaf]

    return mutate


OTHER_INSTANCE = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize(
    ("mutation", "field", "says"),
    [
        (_drop("type"), "type", "Field required"),
        (_drop("id"), "id", "Field required"),
        (_drop("source"), "source", "Field required"),
        (_drop("time"), "time", "Field required"),
        (_drop("subject"), "subject", "Field required"),
        (_drop("data"), "data", "Field required"),
        (_drop("data.plan"), "data.plan", "Field required"),
        (_drop("data.admin_email"), "data.admin_email", "Field required"),
        (_set("specversion", "0.3"), "specversion", "'1.0'"),
        (_set("id", ""), "id", "at least 1 character"),
        (_set("id", "x" * 129), "id", "at most 128 characters"),
        (_set("id", "tab\there"), "id", "should match pattern"),
        (_set("id", "é"), "id", "should match pattern"),
        (_set("time", "2026-11-27 10:00:00"), "time", "RFC 3339"),
        (_set("time", "2026-11-27T10:00:00"), "time", "RFC 3339"),
        (_set("time", 1764237600), "time", "RFC 3339"),
        (_set("source", ""), "source", "at least 1 character"),
        (_set("datacontenttype", "text/xml"), "datacontenttype", "'application/json'"),
        (_set("traceparent", "not-a-traceparent"), "traceparent", "should match pattern"),
        (_set("extension", "x"), "extension", "Extra inputs are not permitted"),
        (_set("subject", OTHER_INSTANCE), "data", f"differs from subject '{OTHER_INSTANCE}'"),
        (_set("subject", INSTANCE_ID.upper()), "subject", "should match pattern"),
        (_set("data.unexpected", 1), "data.unexpected", "Extra inputs are not permitted"),
        (_set("data.instance_id", "not-a-uuid"), "data.instance_id", "should match pattern"),
        (_set("data.customer_id", "bad id!"), "data.customer_id", "should match pattern"),
        (_set("data.customer_id", "c" * 65), "data.customer_id", "should match pattern"),
        (_set("data.subdomain", "Acme"), "data.subdomain", "should match pattern"),
        (_set("data.subdomain", "-acme"), "data.subdomain", "should match pattern"),
        (_set("data.subdomain", "ac"), "data.subdomain", "at least 3 characters"),
        (_set("data.subdomain", "a" * 64), "data.subdomain", "at most 63 characters"),
        (_set("data.subdomain", "acme_corp"), "data.subdomain", "should match pattern"),
        (_set("data.subdomain", "www"), "data.subdomain", "'www' is reserved"),
        (_set("data.subdomain", "admin"), "data.subdomain", "'admin' is reserved"),
        (_set("data.odoo_version", "17"), "data.odoo_version", "not an offered Odoo version"),
        (_set("data.odoo_version", "15.0"), "data.odoo_version", "not an offered Odoo version"),
        (_set("data.odoo_version", 17.0), "data.odoo_version", "valid string"),
        (_set("data.plan.cpu_millicores", 249), "data.plan.cpu_millicores", "between 250 and"),
        (_set("data.plan.cpu_millicores", 16001), "data.plan.cpu_millicores", "and 16000"),
        (_set("data.plan.memory_mib", 511), "data.plan.memory_mib", "between 512 and 65536"),
        (_set("data.plan.storage_gib", 0), "data.plan.storage_gib", "between 1 and 2048"),
        (_set("data.plan.storage_gib", 2049), "data.plan.storage_gib", "between 1 and 2048"),
        (_set("data.plan.cpu_millicores", "500"), "data.plan.cpu_millicores", "valid integer"),
        (_set("data.plan.cpu_millicores", 500.5), "data.plan.cpu_millicores", "valid integer"),
        (_set("data.plan.extra", 1), "data.plan.extra", "Extra inputs are not permitted"),
        (_set("data.demo_data", "true"), "data.demo_data", "valid boolean"),
        (_set("data.demo_data", 1), "data.demo_data", "valid boolean"),
        (_set("data.admin_email", "not-an-email"), "data.admin_email", "not a valid e-mail"),
        (_set("data.admin_email", "a@b"), "data.admin_email", "not a valid e-mail"),
        (_set("data.admin_email", "Jo <jo@acme.example>"), "data.admin_email", "bare e-mail"),
        (_set("data.admin_email", " jo@acme.example"), "data.admin_email", "bare e-mail"),
        (_set("data.language", "english"), "data.language", "should match pattern"),
        (_set("data.modules", ["Sale"]), "data.modules.0", "should match pattern"),
        (_set("data.modules", ["ok", "bad-name"]), "data.modules.1", "should match pattern"),
        (_set("data.modules", ["m" * 65]), "data.modules.0", "should match pattern"),
        (_set("data.modules", [f"m{i}" for i in range(101)]), "data.modules", "at most 100"),
        (_set("data.modules", "sale"), "data.modules", "valid array"),
    ],
)
def test_invalid_data_names_the_field(mutation: Mutation, field: str, says: str) -> None:
    document = provision()
    mutation(document)
    rejection = _reject(encode(document))
    assert rejection.code is RejectionCode.INVALID_DATA
    assert field in [problem.field for problem in rejection.details], rejection.details
    problem = next(p for p in rejection.details if p.field == field)
    assert says in problem.message


def test_every_broken_field_is_reported_at_once() -> None:
    document = provision()
    document["data"]["subdomain"] = "www"
    document["data"]["plan"]["memory_mib"] = 1
    document["data"]["admin_email"] = "nope"
    rejection = _reject(encode(document))
    fields = {problem.field for problem in rejection.details}
    assert fields == {"data.subdomain", "data.plan.memory_mib", "data.admin_email"}
    assert rejection.message.startswith("3 field(s)")


@pytest.mark.parametrize(
    ("command_type", "mutation", "field"),
    [
        ("odoo.instance.suspend.v1", _set("data.reason", "bored"), "data.reason"),
        ("odoo.instance.terminate.v1", _set("data.reason", "payment_failed"), "data.reason"),
        ("odoo.instance.backup.v1", _set("data.backup_id", "b-1"), "data.backup_id"),
        ("odoo.instance.backup.v1", _set("data.label", "x" * 129), "data.label"),
        ("odoo.instance.restore.v1", _drop("data.backup_id"), "data.backup_id"),
        ("odoo.instance.upgrade.v1", _set("data.odoo_version", "19.0"), "data.odoo_version"),
        ("odoo.instance.resize.v1", _set("data.plan.storage_gib", 0), "data.plan.storage_gib"),
        ("odoo.instance.delete.v1", _set("data.keep_data", "no"), "data.keep_data"),
        ("odoo.instance.start.v1", _set("data.reason", "x"), "data.reason"),
        ("odoo.fleet.reconcile.v1", _set("subject", INSTANCE_ID), "subject"),
        ("odoo.fleet.reconcile.v1", _set("data.anything", 1), "data.anything"),
    ],
)
def test_invalid_data_of_other_commands(command_type: str, mutation: Mutation, field: str) -> None:
    document = json.loads(json.dumps(command_example(command_type)))
    mutation(document)
    rejection = _reject(encode(document))
    assert rejection.code is RejectionCode.INVALID_DATA
    assert field in [problem.field for problem in rejection.details]
    assert rejection.command_type == command_type


def test_message_id_must_be_the_cloudevent_id() -> None:
    rejection = _reject(encode(provision()), AmqpProperties(message_id="something-else"))
    assert rejection.code is RejectionCode.INVALID_DATA
    assert [p.field for p in rejection.details] == ["properties.message_id"]


def test_allow_lists_and_bounds_come_from_settings() -> None:
    narrow = ContractSettings(
        odoo_versions=("18.0",),
        reserved_subdomains=frozenset({"acme"}),
        cpu_millicores=Bounds(minimum=2000, maximum=4000),
    )
    with pytest.raises(MessageRejected) as raised:
        parse_command(encode(provision()), AmqpProperties(), narrow)
    fields = {problem.field for problem in raised.value.details}
    assert fields == {"data.odoo_version", "data.subdomain", "data.plan.cpu_millicores"}

    wide = ContractSettings(odoo_versions=("17.0", "19.0"), reserved_subdomains=frozenset())
    document = provision()
    document["data"]["subdomain"] = "www"
    command = parse_command(encode(document), AmqpProperties(), wide)
    assert isinstance(command, ProvisionCommand)
    assert command.data.subdomain == "www"


def test_codes_match_the_contract() -> None:
    assert [code.value for code in RejectionCode] == [
        "malformed",
        "too_large",
        "unsupported_type",
        "invalid_data",
        "unknown_instance",
        "not_allowed_in_state",
        "stale",
        "conflict",
    ]


@pytest.mark.parametrize(
    ("backups", "field"),
    [
        ({"every_hours": 0}, "data.plan.backups.every_hours"),
        ({"every_hours": 169}, "data.plan.backups.every_hours"),
        ({"keep_daily": 61}, "data.plan.backups.keep_daily"),
        ({"keep_weekly": -1}, "data.plan.backups.keep_weekly"),
        ({"keep_monthly": 37}, "data.plan.backups.keep_monthly"),
        ({"keep_monthly": "3"}, "data.plan.backups.keep_monthly"),  # strict: no "3" for 3
        ({"every_hour": 1}, "data.plan.backups.every_hour"),  # a misspelt field
    ],
)
def test_a_backup_plan_out_of_its_bounds_is_invalid_data(
    backups: dict[str, Any], field: str
) -> None:
    document = provision()
    document["data"]["plan"]["backups"] = backups
    rejection = _reject(encode(document))
    assert rejection.code is RejectionCode.INVALID_DATA
    assert [problem.field for problem in rejection.details] == [field]


def test_a_backup_plan_within_its_bounds_is_taken_with_the_defaults_for_the_rest() -> None:
    document = provision()
    document["data"]["plan"]["backups"] = {"every_hours": 168, "keep_daily": 0}
    command = parse_command(encode(document), AmqpProperties())
    assert isinstance(command, ProvisionCommand)
    backups = command.data.plan.backups
    assert backups is not None
    assert (backups.every_hours, backups.keep_daily, backups.keep_weekly, backups.keep_monthly) == (
        168,
        0,
        4,
        3,
    )


def _of(command_type: str, **changes: Any) -> bytes:
    document = command_example(command_type)
    document["data"].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_of("odoo.instance.clone.v1", source_instance_id=INSTANCE_ID), "data.source_instance_id"),
        (_of("odoo.instance.clone.v1", backup_id="latest"), "data.backup_id"),
        (_of("odoo.instance.clone.v1", neutralize="yes"), "data.neutralize"),
        (_of("odoo.instance.clone.v1", demo_data=True), "data.demo_data"),
        (_of("odoo.instance.import.v1", modules=["crm"]), "data.modules"),
        (_of("odoo.instance.import.v1", odoo_version="12.0"), "data.odoo_version"),
        (
            _of("odoo.instance.import.v1", archive={"bucket": "b", "key": "k"}),
            "data.archive.bucket",
        ),
        (
            _of("odoo.instance.import.v1", archive={"bucket": "imports", "key": "/etc/passwd"}),
            "data.archive.key",
        ),
        (
            _of("odoo.instance.import.v1", archive={"bucket": "imports", "key": "a\nb"}),
            "data.archive.key",
        ),
        (_of("odoo.instance.import.v1", archive={"bucket": "imports"}), "data.archive.key"),
    ],
)
def test_a_clone_or_import_that_breaks_the_contract_names_the_field(
    body: bytes, field: str
) -> None:
    rejection = _reject(body)
    assert rejection.code is RejectionCode.INVALID_DATA
    assert field in [detail.field for detail in rejection.details], rejection.details


PLATFORM = ContractSettings(platform_domains=("odoo.test",))


@pytest.mark.parametrize(
    ("domain", "says"),
    [
        ("Shop.Acme.Example", "must be lower-case"),
        ("shop.acme.example.", "without the trailing dot"),
        ("acme", "fully qualified domain name"),
        ("shop_1.acme.example", "fully qualified domain name"),
        ("-shop.acme.example", "fully qualified domain name"),
        ("shop..acme.example", "fully qualified domain name"),
        (f"{'a' * 64}.example", "fully qualified domain name"),
        (".".join(["abcdefghi"] * 25) + ".example", "at most 253 characters"),
        ("192.0.2.10", "not an IP address"),
        ("2001:db8::1", "fully qualified domain name"),
        ("odoo.test", "under the platform's domain odoo.test"),
        ("shop.odoo.test", "under the platform's domain odoo.test"),
        ("printer.local", "reserved (local)"),
        ("localhost.localdomain", "reserved"),
        ("x.in-addr.arpa", "reserved (arpa)"),
    ],
)
def test_a_customer_domain_that_breaks_the_rules_is_invalid_data(domain: str, says: str) -> None:
    document = command_example("odoo.instance.domain.add.v1")
    document["data"]["domain"] = domain
    with pytest.raises(MessageRejected) as raised:
        parse_command(encode(document), AmqpProperties(), PLATFORM)
    rejection = raised.value
    assert rejection.code is RejectionCode.INVALID_DATA
    assert [detail.field for detail in rejection.details] == ["data.domain"]
    assert says in rejection.details[0].message


@pytest.mark.parametrize(
    "domain",
    ["erp.acme.example", "acme.example", "xn--mnchen-3ya.example", "a-b.c-d.shop", "odoo.testing"],
)
def test_a_customer_domain_within_the_rules_is_taken_as_given(domain: str) -> None:
    for command_type in ("odoo.instance.domain.add.v1", "odoo.instance.domain.remove.v1"):
        document = command_example(command_type)
        document["data"]["domain"] = domain
        command = parse_command(encode(document), AmqpProperties(), PLATFORM)
        assert getattr(command.data, "domain") == domain  # noqa: B009
