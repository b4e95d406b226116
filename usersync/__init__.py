"""usersync: the runtime glue shared by the gateway and the workers (store, logging, CLI)."""

__version__ = "0.1.0"
