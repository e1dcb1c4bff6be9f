"""The work done inside Kubernetes Jobs: `instance-service job backup|restore`."""
