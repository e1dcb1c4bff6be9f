"""The manifest builders, by value: what each object says, for the cases that differ."""

import re
from dataclasses import replace

import pytest

from k8s.certificates import build_certificate
from k8s.exposure import build_ingress, build_service, host_of
from k8s.names import InstanceNames
from k8s.network import build_network_policies
from k8s.odoo_conf import render_odoo_conf, sizing
from k8s.settings import DomainSettings, TenantSettings
from k8s.spec import TenantCredentials
from k8s.workload import (
    Manifest,
    build_deployment,
    build_init_job,
    build_secret,
    build_volume,
)
from messages.errors import PermanentError
from tests.tenant_specs import INSTANCE, tenant_spec

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TENANTS = TenantSettings(base_domain="odoo.example.net", storage_class="fast", tls_secret="wild")
CREDENTIALS = TenantCredentials("db-secret-value", "admin-secret-value", "master-secret-value")


_spec = tenant_spec


def test_names_are_stable_valid_and_distinct() -> None:
    names = InstanceNames(INSTANCE)
    kube = [names.base, names.secret, names.volume, names.init_job]
    assert all(DNS_1123_LABEL.match(name) and len(name) <= 63 for name in kube)
    assert len(set(kube)) == len(kube)
    assert names.base == "odoo-0b8f3c1e7c2d4d5e9f102a3b4c5d6e7f"
    assert names.database == names.role == "odoo_0b8f3c1e7c2d4d5e9f102a3b4c5d6e7f"
    assert InstanceNames(INSTANCE) == names
    assert names.internal_url("t") == f"http://{names.base}.t.svc.cluster.local:8069"


@pytest.mark.parametrize(
    ("cpu", "memory", "workers"),
    [(250, 512, 1), (1000, 2048, 3), (2000, 4096, 5), (4000, 2048, 5), (16000, 65536, 33)],
)
def test_workers_follow_cpu_and_memory_and_fit_the_limit(
    cpu: int, memory: int, workers: int
) -> None:
    size = sizing(_spec(cpu_millicores=cpu, memory_mib=memory))
    assert size.workers == workers
    assert size.limit_memory_soft < size.limit_memory_hard
    # Workers and the cron worker at their hard limit, plus the base, fit the container.
    assert size.limit_memory_hard * (size.workers + 1) + 256 * 1024 * 1024 <= memory * 1024 * 1024


def test_odoo_conf_is_hardened_and_names_its_database() -> None:
    text = render_odoo_conf(_spec(), CREDENTIALS, TENANTS)
    options = dict(line.split(" = ", 1) for line in text.splitlines()[1:])
    assert text.startswith("[options]\n")
    assert options["list_db"] == "False"
    assert options["proxy_mode"] == "True"
    assert options["db_name"] == InstanceNames(INSTANCE).database
    assert options["dbfilter"] == f"^{InstanceNames(INSTANCE).database}$"
    assert options["db_password"] == "db-secret-value"
    assert options["admin_passwd"] == "master-secret-value"
    assert options["workers"] == "3"
    assert "None" not in text


def test_secret_holds_every_credential_and_the_conf() -> None:
    secret = build_secret(_spec(), CREDENTIALS, TENANTS, "tenants")
    assert secret["metadata"]["name"].endswith("-credentials")
    assert set(secret["stringData"]) == {
        "database-user",
        "database-password",
        "admin-password",
        "admin-passwd",
        "odoo.conf",
    }
    assert "secret-value" not in repr(CREDENTIALS)


def test_volume_size_and_class_come_from_plan_and_settings() -> None:
    claim = build_volume(_spec(storage_gib=40), TENANTS, "tenants")["spec"]
    assert claim["resources"]["requests"]["storage"] == "40Gi"
    assert claim["storageClassName"] == "fast"
    assert claim["accessModes"] == ["ReadWriteOnce"]
    default = build_volume(_spec(), TenantSettings(), "tenants")["spec"]
    assert "storageClassName" not in default


@pytest.mark.parametrize(("version", "uid"), [("16.0", 101), ("17.0", 101), ("18.0", 100)])
def test_deployment_is_hardened_and_sized(version: str, uid: int) -> None:
    deployment = build_deployment(_spec(odoo_version=version), TENANTS, "tenants", replicas=0)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 0
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert container["image"] == f"docker.io/library/odoo:{version}"
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 101
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "2048Mi"}
    assert container["startupProbe"]["httpGet"]["path"] == "/web/health"
    assert container["startupProbe"]["failureThreshold"] == 30
    assert container["readinessProbe"]["timeoutSeconds"] == 5
    assert container["livenessProbe"] == {
        "tcpSocket": {"port": "http"},
        "periodSeconds": 30,
        "failureThreshold": 6,
    }
    probed = [
        container[p].get("httpGet", container[p].get("tcpSocket"))["port"]
        for p in ("startupProbe", "readinessProbe", "livenessProbe")
    ]
    assert set(probed) == {"http"}  # never the gevent port 8072


def _init_containers(job: Manifest) -> tuple[list[str], Manifest]:
    pod = job["spec"]["template"]["spec"]
    (create,) = pod["initContainers"]
    (admin,) = pod["containers"]
    return create["command"], admin


def test_init_job_installs_base_modules_and_language_then_replaces_the_admin_password() -> None:
    command, admin = _init_containers(build_init_job(_spec(), TENANTS, "tenants"))
    assert command[-1] == "--stop-after-init"
    assert command[command.index("-i") + 1] == "base"
    assert "--without-demo=all" in command
    script = admin["command"][2]
    assert "env.ref('base.user_admin')" in script
    assert "admin-secret-value" not in str(admin)  # from the Secret, never in the manifest
    (password,) = [e for e in admin["env"] if e["name"] == "ODOO_ADMIN_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": InstanceNames(INSTANCE).secret,
        "key": "admin-password",
    }

    rich = build_init_job(
        _spec(
            demo_data=True,
            language="fr_BE",
            modules=("sale", "base", "crm"),
            admin_email="it@acme.example",
        ),
        TENANTS,
        "t",
    )
    command, admin = _init_containers(rich)
    assert command[command.index("-i") + 1] == "base,sale,crm"
    assert "--without-demo=all" not in command
    assert "--load-language=fr_BE" in command
    assert {"name": "ODOO_ADMIN_EMAIL", "value": "it@acme.example"} in admin["env"]
    assert rich["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_server_does_not_run_the_images_entrypoint() -> None:
    (container,) = build_deployment(_spec(), TENANTS, "t", replicas=1)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["command"] == ["odoo"]  # the entrypoint would put the password in argv
    assert container["args"] == ["-c", "/etc/odoo/odoo.conf"]


def test_the_server_selector_leaves_out_the_init_jobs_pods() -> None:
    spec = _spec()
    selector = build_deployment(spec, TENANTS, "t", replicas=1)["spec"]["selector"]["matchLabels"]
    job_pod_labels = build_init_job(spec, TENANTS, "t")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_pod_labels.items()
    assert build_service(spec, "t")["spec"]["selector"] == selector


@pytest.mark.parametrize("customer", ["_" + "a" * 63, "-x-", "cus_4711"])
def test_any_valid_customer_id_becomes_a_valid_label(customer: str) -> None:
    manifest = build_service(_spec(customer_id=customer), "t")
    label = manifest["metadata"]["labels"]["odoo.saas/customer-id"]
    assert re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", label)
    assert manifest["metadata"]["annotations"]["odoo.saas/customer-id"] == customer


def test_an_unconfigured_version_has_no_image() -> None:
    with pytest.raises(PermanentError) as raised:
        build_deployment(_spec(odoo_version="15.0"), TENANTS, "tenants", replicas=1)
    assert raised.value.code == "image_not_allowed"


def test_service_and_ingress() -> None:
    spec = _spec()
    service = build_service(spec, "tenants")
    assert {p["port"] for p in service["spec"]["ports"]} == {8069, 8072}
    assert service["spec"]["selector"] == spec.selector()

    ingress = build_ingress(spec, TENANTS, "tenants")["spec"]
    assert host_of(spec, TENANTS) == "acme.odoo.example.net"
    (rule,) = ingress["rules"]
    routes = {p["path"]: p["backend"]["service"]["port"]["name"] for p in rule["http"]["paths"]}
    assert routes == {"/websocket": "websocket", "/": "http"}
    assert ingress["tls"] == [{"hosts": ["acme.odoo.example.net"], "secretName": "wild"}]
    assert "tls" not in build_ingress(spec, TenantSettings(), "t")["spec"]


def test_customer_domains_get_their_own_ingress_rules_tls_and_certificates() -> None:
    spec = replace(_spec(), domains=("erp.acme.example", "shop.acme.example"))
    names = spec.names
    ingress = build_ingress(spec, TENANTS, "tenants")["spec"]
    assert [rule["host"] for rule in ingress["rules"]] == [
        "acme.odoo.example.net",  # the primary host first: Odoo's web.base.url stays on it
        "erp.acme.example",
        "shop.acme.example",
    ]
    assert ingress["tls"] == [
        {"hosts": ["acme.odoo.example.net"], "secretName": "wild"},
        {"hosts": ["erp.acme.example"], "secretName": names.certificate_secret("erp.acme.example")},
        {
            "hosts": ["shop.acme.example"],
            "secretName": names.certificate_secret("shop.acme.example"),
        },
    ]
    without_wildcard = build_ingress(spec, TenantSettings(), "t")["spec"]["tls"]
    assert [entry["hosts"] for entry in without_wildcard] == [
        ["erp.acme.example"],
        ["shop.acme.example"],
    ]

    settings = DomainSettings(issuer_kind="Issuer", issuer_name="acme-http01")
    certificate = build_certificate(spec, "erp.acme.example", settings, "tenants")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["name"] == names.certificate("erp.acme.example")
    assert len(certificate["metadata"]["name"]) <= 63
    assert certificate["metadata"]["annotations"]["odoo.saas/domain"] == "erp.acme.example"
    assert certificate["metadata"]["labels"]["app.kubernetes.io/component"] == "domain"
    body = certificate["spec"]
    assert body["dnsNames"] == ["erp.acme.example"]
    assert body["commonName"] == "erp.acme.example"
    assert body["secretName"] == names.certificate_secret("erp.acme.example")
    assert body["secretTemplate"]["labels"] == certificate["metadata"]["labels"]
    assert body["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "Issuer",
        "name": "acme-http01",
    }
    long_domain = ".".join(["abcdefghij"] * 10) + ".example"  # 118 characters
    assert "commonName" not in build_certificate(spec, long_domain, settings, "t")["spec"]
    assert names.certificate(long_domain) != names.certificate("erp.acme.example")


def test_every_object_carries_instance_and_customer_labels() -> None:
    spec = _spec()
    objects = [
        build_secret(spec, CREDENTIALS, TENANTS, "t"),
        build_volume(spec, TENANTS, "t"),
        build_init_job(spec, TENANTS, "t"),
        build_deployment(spec, TENANTS, "t", replicas=1),
        build_service(spec, "t"),
        build_ingress(spec, TENANTS, "t"),
        *build_network_policies(spec, TENANTS, "t"),
    ]
    for manifest in objects:
        labels = manifest["metadata"]["labels"]
        assert labels["odoo.saas/instance-id"] == INSTANCE
        assert labels["odoo.saas/customer-id"] == "cus_4711"
        assert manifest["metadata"]["annotations"]["odoo.saas/customer-id"] == "cus_4711"
        assert labels["app.kubernetes.io/managed-by"] == "instance-service"
        assert manifest["metadata"]["namespace"] == "t"
