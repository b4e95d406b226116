"""The ingress: the HTTP API (v1 events, CloudEvents, SCIM 2.0, admin calls) and its limits."""
