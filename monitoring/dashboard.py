"""The operators' Grafana dashboard, built with the Grafana Foundation SDK (typed builders,
Grafana 12's schema): commands by type and outcome, handler latency, queue depth and consumers,
outbox backlog, dead letters, Kubernetes request errors, and the freshness the alerts watch.

Queries use the names Prometheus gives the service's OTLP metrics (deploy/monitoring/
prometheus.yaml pins the translation) and RabbitMQ's own `rabbitmq_detailed_*` metrics; the
replica count comes from kube-state-metrics where it runs (`kube_deployment_status_replicas`).
"""

import json

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as models

UID = "instance-service-operations"
DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
WORK_QUEUES = 'queue=~"instance-service\\\\.commands\\\\..*"'


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def _series(
    panel_id: int, title: str, unit: str, description: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _number(panel_id: int, title: str, unit: str, expr: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(_query(expr, title).instant())
    )


def build() -> models.Dashboard:
    """The dashboard."""
    latency = (
        "histogram_quantile({q}, sum by (le, instance_service_command_type) "
        f"(rate(instance_service_handler_duration_seconds_bucket{RATE})))"
    )
    return (
        dashboard.Dashboard("instance-service: operations")
        .uid(UID)
        .tags(["instance-service"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_row(dashboard.Row("Now").id(1))
        .with_panel(
            _number(
                2,
                "Commands answered (1 h)",
                units.Short,
                "sum(increase(instance_service_commands_completed_total[1h]))",
                "Commands answered with a terminal event in the last hour.",
            )
        )
        .with_panel(
            _number(
                3,
                "Dead letters (1 h)",
                units.Short,
                "sum(increase(instance_service_commands_dead_lettered_total[1h]))",
                "Deliveries moved to the dead-letter queue in the last hour.",
            )
        )
        .with_panel(
            _number(
                4,
                "Outbox backlog",
                units.Short,
                "max(instance_service_outbox_backlog)",
                "Events recorded and not yet published (every process reports the same outbox).",
            )
        )
        .with_panel(
            _number(
                5,
                "Commands waiting",
                units.Short,
                f"sum(rabbitmq_detailed_queue_messages_ready{{{WORK_QUEUES}}})",
                "Messages ready in the work queues and their delay queues.",
            )
        )
        .with_row(dashboard.Row("Commands").id(6))
        .with_panel(
            _series(
                7,
                "Commands by type and outcome",
                units.RequestsPerSecond,
                "Commands answered per second: succeeded, failed, rejected.",
                _query(
                    "sum by (instance_service_command_type, instance_service_outcome) "
                    f"(rate(instance_service_commands_completed_total{RATE}))",
                    "{{instance_service_command_type}} {{instance_service_outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                8,
                "Handler latency (p50, p95)",
                units.Seconds,
                "One handler run, by command type (a long command runs in several turns).",
                _query(latency.format(q=0.5), "p50 {{instance_service_command_type}}", "A"),
                _query(latency.format(q=0.95), "p95 {{instance_service_command_type}}", "B"),
            )
        )
        .with_panel(
            _series(
                9,
                "Dead letters by type and reason",
                units.Short,
                "Deliveries moved to the dead-letter queue, per 5 minutes.",
                _query(
                    "sum by (instance_service_command_type, error_type) "
                    "(increase(instance_service_commands_dead_lettered_total[5m]))",
                    "{{instance_service_command_type}} {{error_type}}",
                ),
            )
        )
        .with_panel(
            _series(
                10,
                "Retries by reason",
                units.RequestsPerSecond,
                "Deliveries put back on a delay queue (continue: a long command's next turn).",
                _query(
                    "sum by (instance_service_retry_reason) "
                    f"(rate(instance_service_commands_retries_total{RATE}))",
                    "{{instance_service_retry_reason}}",
                ),
            )
        )
        .with_row(dashboard.Row("Queues and consumers").id(11))
        .with_panel(
            _series(
                12,
                "Queue depth",
                units.Short,
                "Messages in each work queue: ready, and delivered but not yet acknowledged.",
                _query(
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{WORK_QUEUES}}})",
                    "ready {{queue}}",
                    "A",
                ),
                _query(
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{WORK_QUEUES}}})",
                    "unacked {{queue}}",
                    "B",
                ),
            )
        )
        .with_panel(
            _series(
                13,
                "Replicas and consumers",
                units.Short,
                "Consumer pods KEDA keeps (kube-state-metrics), and the broker's count of "
                "consumers on each work queue.",
                _query(
                    "sum by (deployment) (kube_deployment_status_replicas"
                    '{deployment=~"instance-service-(quick|long)"})',
                    "replicas {{deployment}}",
                    "A",
                ),
                _query(
                    f"sum by (queue) (rabbitmq_detailed_queue_consumers{{{WORK_QUEUES}}})",
                    "consumers {{queue}}",
                    "B",
                ),
            )
        )
        .with_row(dashboard.Row("Events and the cluster").id(14))
        .with_panel(
            _series(
                15,
                "Outbox",
                units.Short,
                "Events waiting to be published, and how long the oldest has waited (s).",
                _query("max(instance_service_outbox_backlog)", "backlog", "A"),
                _query("max(instance_service_outbox_oldest_age_seconds)", "oldest (s)", "B"),
            )
        )
        .with_panel(
            _series(
                16,
                "Kubernetes request errors",
                units.RequestsPerSecond,
                "API requests answered 4xx/5xx (a 404 where absence is an answer included), or "
                "left without an answer.",
                _query(
                    "sum by (k8s_verb, k8s_resource, http_response_status_code) "
                    "(rate(instance_service_kubernetes_requests_total"
                    f'{{http_response_status_code=~"[45].."}}{RATE}))',
                    "{{k8s_verb}} {{k8s_resource}} {{http_response_status_code}}",
                    "A",
                ),
                _query(
                    "sum by (k8s_verb, k8s_resource, error_type) "
                    f'(rate(instance_service_kubernetes_requests_total{{error_type!=""}}{RATE}))',
                    "{{k8s_verb}} {{k8s_resource}} {{error_type}}",
                    "B",
                ),
            )
        )
        .with_row(dashboard.Row("Routine work").id(17))
        .with_panel(
            _series(
                18,
                "Since the watcher's heartbeat and the last reconcile",
                units.Seconds,
                "Seconds since the watcher's last healthy turn and since the last fleet "
                "reconcile succeeded.",
                _query(
                    "time() - max(instance_service_watcher_heartbeat_timestamp_seconds)",
                    "watcher",
                    "A",
                ),
                _query(
                    "time() - max(instance_service_reconcile_last_success_timestamp_seconds)",
                    "reconcile",
                    "B",
                ),
            )
        )
        .with_panel(
            _series(
                19,
                "Backups and certificates nearest their bound",
                units.Seconds,
                "The longest any instance has gone without a backup, against twice its "
                "interval; the shortest validity left of any customer domain's certificate.",
                _query("max(instance_service_backup_age_seconds)", "longest without backup", "A"),
                _query(
                    "min(instance_service_certificate_remaining_validity_seconds)",
                    "shortest certificate validity",
                    "B",
                ),
            )
        )
        .build()
    )


def render() -> str:
    """The dashboard's JSON, as Grafana imports it."""
    return json.dumps(build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
