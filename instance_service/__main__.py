"""Allows `python -m instance_service`."""

import sys

from instance_service.cli import main

sys.exit(main())
