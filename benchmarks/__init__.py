"""keepalive-bench: harness, pyperf clients, compare and reports."""
