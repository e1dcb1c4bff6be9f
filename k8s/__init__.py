"""Kubernetes: pure manifest builders and the one module family that talks to the API."""
