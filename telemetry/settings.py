"""Settings of logging, one group of the service's settings."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class LogSettings(BaseModel):
    """How much the service says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: LogLevel = "INFO"
