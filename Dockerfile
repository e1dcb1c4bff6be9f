# instance-service image: the consumer, the watcher and the backup/restore Jobs share it.
# No Docker engine exists on the project's build machines, so CI does not build this file; it
# installs exactly what scripts/bootstrap.sh installs (uv.lock, no dev group).

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/instance-service
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY instance_service ./instance_service
COPY messages ./messages
COPY handlers ./handlers
COPY k8s ./k8s
COPY consumers ./consumers
COPY store ./store
COPY telemetry ./telemetry
COPY jobs ./jobs
COPY objectstore ./objectstore
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
# pg_dump and pg_restore for the backup and restore Jobs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin instance-service
COPY --from=build /opt/instance-service /opt/instance-service
ENV PATH=/opt/instance-service/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["instance-service"]
CMD ["consume"]
