"""Locust files; run them with `python -m locust -f locustfiles/keepalive.py`."""
