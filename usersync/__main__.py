"""`python -m usersync` is the `usersync` command."""

import sys

from usersync.cli import main

sys.exit(main())
