"""`make ui`: a reference server and Locust's web UI on it, with a server-side tab (issue 5).

`python -m benchmarks ui` is the launcher (launcher.py); `serverwatch.py` samples the server
for the tab and the charts page (charts.html) that locustfiles/lab.py adds to the web UI.
"""
