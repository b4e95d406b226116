"""usersync's composition root: the command line and the process runtime, the only place that
wires the gateway and the workers together (docs/architecture.md)."""

from core import __version__

__all__ = ["__version__"]
