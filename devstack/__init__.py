"""The local stack for development and tests: RabbitMQ, PostgreSQL and a Kubernetes control plane.

Everything listens on 127.0.0.1 and keeps its state, logs and credentials under one directory
(``$DEVSTACK_HOME``, default ``~/.local/state/instance-service/devstack``). Run it as
``python -m devstack up|down|status|env|build``.
"""
