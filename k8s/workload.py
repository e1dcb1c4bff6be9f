"""Pure builders of an instance's workload: Secret, volume, initialisation Job, Deployment.

Typed inputs in, manifest dicts out, no I/O: tested by value, applied by k8s/apply.
"""

from typing import Any

from k8s.odoo_conf import config_fingerprint, render_odoo_conf
from k8s.settings import OdooImage, TenantSettings
from k8s.spec import InstanceSpec, TenantCredentials
from messages.errors import PermanentError

Manifest = dict[str, Any]
CONFIG_PATH = "/etc/odoo/odoo.conf"
ADMIN_SCRIPT = (
    "import os\n"
    "admin = env.ref('base.user_admin')\n"
    "values = {'password': os.environ['ODOO_ADMIN_PASSWORD']}\n"
    "email = os.environ.get('ODOO_ADMIN_EMAIL')\n"
    "if email:\n"
    "    values.update(login=email, email=email)\n"
    "admin.write(values)\n"
    "env.cr.commit()\n"
)
"""Run in `odoo shell` after the database exists; the password comes from the Secret."""
DATA_PATH = "/var/lib/odoo"
CONFIG_ANNOTATION = "odoo.saas/config"


def instance_metadata(
    spec: InstanceSpec, name: str, namespace: str, labels: dict[str, str]
) -> Manifest:
    """The metadata of one of an instance's objects: its name, labels and the customer id."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": spec.annotations(),
    }


def claim_spec(access_mode: str, storage_gib: int, tenants: TenantSettings) -> Manifest:
    """A PersistentVolumeClaim's spec: this size and access mode, in the tenants' storage class."""
    claim: Manifest = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": f"{storage_gib}Gi"}},
    }
    if tenants.storage_class is not None:
        claim["storageClassName"] = tenants.storage_class
    return claim


def image_of(spec: InstanceSpec, tenants: TenantSettings) -> tuple[str, OdooImage]:
    """The official image of the instance's version, from the configured registry."""
    image = tenants.images.get(spec.odoo_version)
    if image is None:
        allowed = ", ".join(sorted(tenants.images))
        raise PermanentError(
            "image_not_allowed",
            f"no image is configured for Odoo {spec.odoo_version} (configured: {allowed})",
        )
    return f"{tenants.image_registry}/odoo:{spec.odoo_version}", image


def build_secret(
    spec: InstanceSpec, credentials: TenantCredentials, tenants: TenantSettings, namespace: str
) -> Manifest:
    """The credentials and odoo.conf: the only place the passwords exist."""
    names = spec.names
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": instance_metadata(spec, names.secret, namespace, spec.labels("credentials")),
        "type": "Opaque",
        "stringData": {
            "database-user": names.role,
            "database-password": credentials.database_password,
            "admin-password": credentials.admin_password,
            "admin-passwd": credentials.master_password,
            "odoo.conf": render_odoo_conf(spec, credentials, tenants),
        },
    }


def build_volume(spec: InstanceSpec, tenants: TenantSettings, namespace: str) -> Manifest:
    """The filestore and sessions volume (ReadWriteOnce, so the Deployment recreates)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": instance_metadata(spec, spec.names.volume, namespace, spec.labels("data")),
        "spec": claim_spec("ReadWriteOnce", spec.storage_gib, tenants),
    }


def _pod_security(image: OdooImage) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": image.uid,
        "runAsGroup": image.gid,
        "fsGroup": image.gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


_CONTAINER_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    # Writes go to the mounted volumes only: the data volume and the scratch directory.
    "readOnlyRootFilesystem": True,
}
SCRATCH_PATH = "/tmp"  # noqa: S108 - a pod's own emptyDir, not a shared host directory
SCRATCH_VOLUME: Manifest = {"name": "scratch", "emptyDir": {}}
"""Where a read-only container still writes temporary files (Odoo's reports and uploads, a
shell's here-documents, pg_dump's and psql's temporary files): its own, gone with the pod."""
SCRATCH_MOUNT: Manifest = {"name": "scratch", "mountPath": SCRATCH_PATH}


def _volumes(spec: InstanceSpec) -> list[Manifest]:
    names = spec.names
    return [
        {
            "name": "config",
            "secret": {
                "secretName": names.secret,
                "items": [{"key": "odoo.conf", "path": "odoo.conf"}],
                "defaultMode": 0o440,
            },
        },
        {"name": "data", "persistentVolumeClaim": {"claimName": names.volume}},
        SCRATCH_VOLUME,
    ]


_MOUNTS: list[Manifest] = [
    {"name": "config", "mountPath": CONFIG_PATH, "subPath": "odoo.conf", "readOnly": True},
    {"name": "data", "mountPath": DATA_PATH},
    SCRATCH_MOUNT,
]


def _resources(spec: InstanceSpec) -> Manifest:
    memory = f"{spec.memory_mib}Mi"
    return {
        "requests": {"cpu": f"{spec.cpu_millicores}m", "memory": memory},
        "limits": {"cpu": f"{spec.cpu_millicores}m", "memory": memory},
    }


def _pod_basics(spec: InstanceSpec, image: OdooImage) -> Manifest:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no other Service's address leaks into the environment
        "securityContext": _pod_security(image),
        "volumes": _volumes(spec),
    }


def build_init_job(spec: InstanceSpec, tenants: TenantSettings, namespace: str) -> Manifest:
    """Creates the database: `odoo -i base,<modules> --stop-after-init`, demo data on request."""
    image_ref, image = image_of(spec, tenants)
    modules = ",".join(["base", *[m for m in spec.modules if m != "base"]])
    command = ["odoo", "-c", CONFIG_PATH, "-d", spec.names.database, "-i", modules]
    if not spec.demo_data:
        command.append("--without-demo=all")
    if spec.language:
        command.append(f"--load-language={spec.language}")
    command.append("--stop-after-init")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": instance_metadata(
            spec, spec.names.init_job, namespace, spec.labels("database-init")
        ),
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": tenants.init_deadline_seconds,
            "template": {
                "metadata": {"labels": {**tenants.pod_labels, **spec.labels("database-init")}},
                "spec": {
                    **_pod_basics(spec, image),
                    "restartPolicy": "Never",
                    "initContainers": [
                        {
                            "name": "create-database",
                            "image": image_ref,
                            "command": command,
                            "resources": _resources(spec),
                            "securityContext": _CONTAINER_SECURITY,
                            "volumeMounts": _MOUNTS,
                        }
                    ],
                    # Odoo creates its admin user with the password "admin": replace it (and
                    # the login, when the command named the admin's e-mail) before serving.
                    "containers": [
                        {
                            "name": "set-admin",
                            "image": image_ref,
                            "command": [
                                "sh",
                                "-c",
                                f"odoo shell -c {CONFIG_PATH} -d {spec.names.database} "
                                f"<<'PY'\n{ADMIN_SCRIPT}PY\n",
                            ],
                            "env": [
                                {
                                    "name": "ODOO_ADMIN_PASSWORD",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": spec.names.secret,
                                            "key": "admin-password",
                                        }
                                    },
                                },
                                {"name": "ODOO_ADMIN_EMAIL", "value": spec.admin_email or ""},
                            ],
                            "resources": _resources(spec),
                            "securityContext": _CONTAINER_SECURITY,
                            "volumeMounts": _MOUNTS,
                        }
                    ],
                },
            },
        },
    }


def build_deployment(
    spec: InstanceSpec, tenants: TenantSettings, namespace: str, *, replicas: int
) -> Manifest:
    """Odoo itself: one pod (the volume is ReadWriteOnce), probed on /web/health."""
    image_ref, image = image_of(spec, tenants)
    health = {"path": "/web/health", "port": "http"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": instance_metadata(spec, spec.names.base, namespace, spec.labels("server")),
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": spec.selector()},
            "template": {
                "metadata": {
                    "labels": {**tenants.pod_labels, **spec.labels("server")},
                    # odoo.conf is mounted with subPath, which never refreshes: a changed conf
                    # changes this, and the pod is replaced.
                    "annotations": {CONFIG_ANNOTATION: config_fingerprint(spec, tenants)},
                },
                "spec": {
                    **_pod_basics(spec, image),
                    "containers": [
                        {
                            "name": "odoo",
                            "image": image_ref,
                            # Not the image's entrypoint: it would copy the database password
                            # from odoo.conf onto the command line, where `ps` shows it.
                            "command": ["odoo"],
                            "args": ["-c", CONFIG_PATH],
                            "env": [{"name": "ODOO_RC", "value": CONFIG_PATH}],
                            "ports": [
                                {"name": "http", "containerPort": 8069},
                                {"name": "websocket", "containerPort": 8072},
                            ],
                            "startupProbe": {
                                "httpGet": health,
                                "periodSeconds": 10,
                                "failureThreshold": 30,
                            },
                            "readinessProbe": {
                                "httpGet": health,
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                                "failureThreshold": 3,
                            },
                            # TCP, not HTTP: a busy Odoo must not be killed for a slow answer.
                            "livenessProbe": {
                                "tcpSocket": {"port": "http"},
                                "periodSeconds": 30,
                                "failureThreshold": 6,
                            },
                            "resources": _resources(spec),
                            "securityContext": _CONTAINER_SECURITY,
                            "volumeMounts": _MOUNTS,
                        }
                    ],
                },
            },
        },
    }


def build_update_job(
    spec: InstanceSpec, tenants: TenantSettings, namespace: str, name: str
) -> Manifest:
    """Updates every module to the instance's (new) version: `odoo -u all --stop-after-init`."""
    image_ref, image = image_of(spec, tenants)
    command = ["odoo", "-c", CONFIG_PATH, "-d", spec.names.database, "-u", "all"]
    command.append("--stop-after-init")
    labels = spec.labels("database-update")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": instance_metadata(spec, name, namespace, labels),
        "spec": {
            "backoffLimit": 0,  # a failed update is rolled back, not tried again blindly
            "activeDeadlineSeconds": tenants.init_deadline_seconds,
            "template": {
                "metadata": {"labels": {**tenants.pod_labels, **labels}},
                "spec": {
                    **_pod_basics(spec, image),
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "update",
                            "image": image_ref,
                            "command": command,
                            "resources": _resources(spec),
                            "securityContext": _CONTAINER_SECURITY,
                            "volumeMounts": _MOUNTS,
                        }
                    ],
                },
            },
        },
    }
