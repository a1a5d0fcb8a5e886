"""Reference HTTP/1.1 servers with one shared keep-alive policy (see shared spec and README)."""
