"""The vendor simulator toolkit: strict local stand-ins for the vendors usersync delivers to.

`create_sandbox_app(simulators, tokens)` builds one aiohttp application serving the given
simulators under their path prefixes, plus a control API under `/_sandbox` for fault
injection, the request journal and user state. The simulators themselves live in the vendor
folders (`workers/vendors/<kind>/simulator.py`, each defining `SIMULATOR`); this package
lists no vendor and imports nothing of usersync's (usersync/sandbox_wiring.py passes the
registered ones).
"""

from sandbox.app import create_sandbox_app
from sandbox.common import Simulator

__all__ = ["Simulator", "create_sandbox_app"]
