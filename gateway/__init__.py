"""The ingress: the v1 event model, the HTTP API, and the Redis writes behind it."""
