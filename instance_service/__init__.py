"""instance-service: the composition root that wires settings, adapters and the CLI together."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("instance-service")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
