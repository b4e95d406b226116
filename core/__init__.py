"""The domain and its storage: the canonical event, masking, the Redis layout and its
scripts, the store. It imports neither the gateway nor the workers (import-linter contracts in
pyproject.toml hold this; docs/architecture.md draws the rooms)."""

from importlib.metadata import version

__version__ = version("usersync")
"""The installed distribution's version: pyproject.toml is the one place it is written."""
