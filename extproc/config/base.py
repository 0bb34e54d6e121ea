"""What every part of the configuration shares: the strict model base, the one error type, names."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONFIG_ENV = "LUNAROUTE_CONFIG"


class ConfigError(Exception):
    """A configuration mistake, phrased as one line for the person who made it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
