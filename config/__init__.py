"""Settings of usersync: pydantic models, the YAML loader, and the shipped config files."""

from config.loader import ConfigError, load_settings
from config.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]
