"""Local simulators of the four vendors usersync delivers to, strict like their documents.

`create_sandbox_app(tokens)` builds one aiohttp application serving MileApp, Fleet, Plaspy
and Partoo under path prefixes, plus a control API under `/_sandbox` for fault injection,
the request journal and user state. `DEMO_USERS` names the user seeded for each kind.
"""

from sandbox.app import create_sandbox_app
from sandbox.state import DEMO_USERS

__all__ = ["DEMO_USERS", "create_sandbox_app"]
