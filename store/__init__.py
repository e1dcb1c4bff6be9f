"""The service's own durable state (instances, inbox, operations, outbox) through SQLAlchemy."""
