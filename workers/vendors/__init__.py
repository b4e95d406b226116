"""One package per vendor kind; `registry` maps a config `kind` to its adapter class."""
