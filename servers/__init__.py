"""Reference HTTP/1.1 servers with one shared keep-alive policy (docs/keepalive-spec.md, README)."""
