"""How long a healthy operation of each command type may take, from the handlers' own waits.

Every wait of a handler ends by a deadline of its own: a rollout by `ready_deadline_seconds`, a
health check by `health_deadline_seconds`, an initialisation or update Job by its
activeDeadlineSeconds (`init_deadline_seconds`), a backup or restore Job by
`backup_deadline_seconds`. An operation that takes longer than the sum of its waits is not
healthy: its handler would have failed it. The watchdog's deadline of a type (settings
`operations.deadline_seconds`) must therefore be at least this sum, or a healthy operation
could be cut; the settings refuse one that is shorter (instance_service/settings.py).

Kept in step with the steps each handler's docstring lists.
"""

from k8s.settings import KubernetesSettings, TenantSettings

T = "odoo.instance."


def healthy_bounds(kubernetes: KubernetesSettings, tenants: TenantSettings) -> dict[str, float]:
    """Command type -> the longest a healthy operation of it takes (seconds, waits summed)."""
    ready, health = kubernetes.ready_deadline_seconds, kubernetes.health_deadline_seconds
    init, data_job = float(tenants.init_deadline_seconds), float(tenants.backup_deadline_seconds)
    up = ready + health  # scale up, rollout to Ready pods, /web/health
    down = ready  # scale to 0, rollout to no pods
    back_up = data_job  # backup volume, backup Job
    return {
        f"{T}provision.v1": init + up,  # init Job, then the server
        f"{T}start.v1": up,
        f"{T}unsuspend.v1": up,
        f"{T}reactivate.v1": up,
        f"{T}restart.v1": up,
        f"{T}resize.v1": up,
        f"{T}stop.v1": down,
        f"{T}suspend.v1": down,
        f"{T}terminate.v1": down,
        f"{T}backup.v1": back_up,
        # a safety backup, down, the restore Job, up again
        f"{T}restore.v1": back_up + down + data_job + up,
        # a backup, down, the update Job, up; and the way back: down, restore, up
        f"{T}upgrade.v1": back_up + down + init + up + down + data_job + up,
        # a final backup, the Deployment gone, the volume gone
        f"{T}delete.v1": back_up + 2 * ready,
    }
