"""Alembic migrations of the state store; run them with `instance-service db upgrade`."""
