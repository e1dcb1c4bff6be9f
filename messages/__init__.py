"""Typed commands and events of the public contract (shared/CONTRACT.md); no imports of ours."""
