"""A volume provisioner for the local cluster, which has no storage driver.

It watches PersistentVolumeClaims of the `devstack-local` StorageClass (the cluster default)
and creates for each a hostPath PersistentVolume under $DEVSTACK_HOME/volumes, pre-bound to the
claim; the PV controller then binds them, and pods using the claim can be scheduled. Volumes of
deleted claims are removed. Grown claims get a grown volume (the claim's status follows).

    python -m devstack.provisioner KUBECONFIG VOLUMES_DIR
"""

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client import ApiException

STORAGE_CLASS = "devstack-local"
PROVISIONER = "devstack.local/hostpath"

log = logging.getLogger("devstack.provisioner")

# The client's models make every field optional; a claim the API server returned has them all.
Claim = Any


def storage_class() -> dict[str, Any]:
    """The default StorageClass whose claims this provisioner serves."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def volume_name(claim: Claim) -> str:
    """A PV name per claim (the claim's uid keeps it unique across re-creations)."""
    return f"devstack-{claim.metadata.uid}"


def _volume(claim: Claim, root: Path) -> dict[str, Any]:
    path = root / f"{claim.metadata.namespace}-{claim.metadata.name}-{claim.metadata.uid[:8]}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # pods run as their image's user; a stand-in has no other owner to pick
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": claim.spec.resources.requests["storage"]},
            "accessModes": claim.spec.access_modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": claim.metadata.uid,
            },
        },
    }


def reconcile_claim(core: client.CoreV1Api, claim: Claim, root: Path) -> None:
    """Give a claim of our class a volume, or grow its volume to the claim's request."""
    if (claim.spec.storage_class_name or STORAGE_CLASS) != STORAGE_CLASS:
        return
    wanted = claim.spec.resources.requests["storage"]
    try:
        existing: Any = core.read_persistent_volume(volume_name(claim))
    except ApiException as error:
        if error.status != 404:
            raise
        body: Any = _volume(claim, root)  # the client sends plain manifests as they are
        core.create_persistent_volume(body)
        log.info(
            "provisioned %s for %s/%s",
            volume_name(claim),
            claim.metadata.namespace,
            claim.metadata.name,
        )
        return
    if existing.spec.capacity.get("storage") != wanted:
        core.patch_persistent_volume(
            existing.metadata.name, {"spec": {"capacity": {"storage": wanted}}}
        )
        core.patch_namespaced_persistent_volume_claim_status(
            claim.metadata.name,
            claim.metadata.namespace,
            {"status": {"capacity": {"storage": wanted}}},
        )


def release_volumes(core: client.CoreV1Api) -> None:
    """Delete volumes whose claims are gone, with their directories."""
    volumes: list[Any] = core.list_persistent_volume().items
    for volume in volumes:
        annotations = volume.metadata.annotations or {}
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if volume.status and volume.status.phase == "Released":
            core.delete_persistent_volume(volume.metadata.name)
            shutil.rmtree(volume.spec.host_path.path, ignore_errors=True)
            log.info("released %s", volume.metadata.name)


def run(kubeconfig: str, root: Path) -> None:
    """Watch claims forever, reconnecting after errors."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    root.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            listed: Any = core.list_persistent_volume_claim_for_all_namespaces()
            for claim in listed.items:
                reconcile_claim(core, claim, root)
            release_volumes(core)
            for event in watch.Watch().stream(
                core.list_persistent_volume_claim_for_all_namespaces,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=30,
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    reconcile_claim(core, event["object"], root)
                elif event["type"] == "DELETED":
                    release_volumes(core)
            release_volumes(core)
        except Exception:
            log.exception("provisioner loop failed; starting over")
            time.sleep(2)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(sys.argv[1], Path(sys.argv[2]))
