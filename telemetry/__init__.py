"""Logging and OpenTelemetry set-up shared by every layer."""
