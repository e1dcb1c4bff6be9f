"""Plays the Odoo pods of the local cluster, which runs no containers: answers /web/health.

A request names the pod (header X-Devstack-Pod: namespace/name, else X-Devstack-Pod-IP) and
the port (X-Devstack-Pod-Port), as the EndpointSlice resolver sets them. The stand-in answers
200 {"status": "pass"} for a Ready pod of a Deployment managed by instance-service that declares
that port, 502 when it does not (in a cluster: connection refused), 500 for a pod labelled
`devstack.local/health=fail` (failure tests), 503 for a pod not Ready, and 404 for anything else.
It listens on loopback only.

    python -m devstack.standin KUBECONFIG PORT
"""

import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client, config

POD_IP_HEADER = "X-Devstack-Pod-IP"
POD_PORT_HEADER = "X-Devstack-Pod-Port"
POD_HEADER = "X-Devstack-Pod"
FAIL_LABEL = "devstack.local/health"

log = logging.getLogger("devstack.standin")


def verdict(pods: list[Any], port: int) -> tuple[int, dict[str, str]]:
    """The answer for the pods found at one IP, asked on `port`."""
    for pod in pods:
        labels = pod.metadata.labels or {}
        if labels.get("app.kubernetes.io/managed-by") != "instance-service":
            continue
        served = {p.container_port for c in pod.spec.containers for p in c.ports or []}
        if port not in served:  # in a cluster: connection refused
            return 502, {"status": "fail", "reason": f"nothing listens on port {port}"}
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if not ready:
            return 503, {"status": "fail", "reason": "pod not ready"}
        if labels.get(FAIL_LABEL) == "fail":
            return 500, {"status": "fail", "reason": "told to fail"}
        return 200, {"status": "pass"}
    return 404, {"status": "fail", "reason": "no managed pod at this address"}


def serve(kubeconfig: str, port: int) -> None:
    """Answer health checks until killed."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))

    class Odoo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/web/health":
                self.send_error(404)
                return
            ip = self.headers.get(POD_IP_HEADER, "")
            port = int(self.headers.get(POD_PORT_HEADER, "8069"))
            named = self.headers.get(POD_HEADER, "")
            if "/" in named:  # exact: an IP may belong to a deleted pod and a new one at once
                namespace, name = named.split("/", 1)
                selector = f"metadata.name={name}"
                pods = core.list_namespaced_pod(namespace, field_selector=selector).items
                status, body = verdict(pods, port)
            elif ip:
                selector = f"status.podIP={ip}"
                pods = core.list_pod_for_all_namespaces(field_selector=selector).items
                status, body = verdict(pods, port)
            else:
                status, body = 400, {"status": "fail", "reason": "no pod IP given"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.info("%s %s", self.headers.get(POD_IP_HEADER, "-"), format % args)

    ThreadingHTTPServer(("127.0.0.1", port), Odoo).serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(sys.argv[1], int(sys.argv[2]))
