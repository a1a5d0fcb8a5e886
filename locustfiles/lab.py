"""The keep-alive lab: the four user classes plus a server-side tab in Locust's web UI.

    python -m benchmarks ui            # starts a server and this locustfile; see docs/ui.md

Pick PooledUser, UnpooledUser or a requests variant in the class picker and watch what the
server sees. Locust's React UI renders extra tabs declared in `template_args` (`extended_tabs`
plus an `extended_tables` layout) with rows the `/stats/requests` poll carries under
`extended_stats`; that is the mechanism of Locust's own examples/extend_web_ui.py, so no
custom frontend is built or shipped. The tab only refreshes while a test runs (that poll stops
with the test), so `/kab/server` draws the same numbers as charts, live at all times: closes by
idle_timeout and TIME_WAIT draining after a stop are what the lab is about.

A guard on `/swarm` refuses, with a message the start and Edit forms show, what Locust would
take and then fail on: a think time that is negative or not a number, and a switch of user
class while the users of a test are still alive (Locust 2.47 raises KeyError and freezes).

`--kab-control-url` (set by `python -m benchmarks ui`) names the server's control listener; the
sampler runs only where the web UI runs (the master with --processes or --master), never on
workers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from flask import Response, jsonify, request
from locust import events
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_STOPPED, LocalRunner, MasterRunner

from benchmarks.ui import serverwatch
from benchmarks.ui.serverwatch import ServerWatch
from locustfiles.keepalive import (  # noqa: F401 (Locust collects the user classes from here)
    PooledRequestsUser,
    PooledUser,
    UnpooledRequestsUser,
    UnpooledUser,
    valid_seconds,
)

TAB_KEY = "server"
SAMPLE_INTERVAL_S = 1.0
STATS_ROUTE = "/kab/server-stats"
CHARTS_ROUTE = "/kab/server"
CSV_ROUTE = "/kab/server-stats.csv"
CHARTS_PAGE = Path(serverwatch.__file__).with_name("charts.html")
IDLE_STATES = (STATE_INIT, STATE_STOPPED)  # "ready", "stopped": no user of an old test is left
logger = logging.getLogger(__name__)
TAB_TEMPLATE_ARGS = {
    "extended_tabs": [{"title": "Server side", "key": TAB_KEY}],
    "extended_tables": [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "metric", "title": "Server-side metric"},
                {"key": "now", "title": "Now (last 3 s)"},
                {"key": "total", "title": "Since test start"},
            ],
        }
    ],
    "extended_csv_files": [{"href": CSV_ROUTE, "title": "Server-side rates CSV"}],
}


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--kab-control-url", default="", include_in_web_ui=False,
        help="the reference server's control URL (its READY line's control=); "
        "enables the web UI's Server side tab",
    )  # fmt: skip


def _server_port(host: str) -> int:
    """The load target's port: TIME_WAIT sockets are counted on it."""
    parts = urlsplit(host)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _no_watch_rows() -> list[dict[str, str]]:
    hint = "start with --kab-control-url (python -m benchmarks ui does)"
    return [{"metric": "server", "now": hint, "total": ""}]


def _sample_forever(watch: ServerWatch) -> None:
    while True:
        watch.sample()
        gevent.sleep(SAMPLE_INTERVAL_S)


def _csv(watch: ServerWatch) -> str:
    """One line per second: the charts' series, for a spreadsheet."""
    series = watch.series(last=len(watch.history))
    reasons = sorted({r for point in series for r in point["closed_per_s"]})
    columns = ["t", "conn_per_s", "req_per_s", "open", "req_per_conn", "time_wait_server",
               "time_wait_client", "cpu_percent"]  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns + [f"closed_{r}_per_s" for r in reasons])
    for point in series:
        closed = [point["closed_per_s"].get(r, 0) for r in reasons]
        writer.writerow([point[c] for c in columns] + closed)
    return out.getvalue()


def think_time_error(text: str | None) -> str:
    """Why a think time typed in the web UI cannot run ("" if it can).

    Locust converts extra fields with float() and checks nothing else: a negative pause would
    be taken silently, "abc" would end in a 500. Refused here, the form shows the message.
    """
    if text is None or valid_seconds(text) is not None:
        return ""
    return f"Kab Think Time must be a number of seconds >= 0, got {text!r}"


def class_change_error(wanted: Iterable[str], running: Iterable[str], state: str) -> str:
    """Why /swarm must not switch user classes now ("" if it may).

    Locust 2.47 raises KeyError and freezes (Stop answers 500) when a /swarm drops the class of
    users still alive: during a test, or while it is stopping. Only dropping hurts: the Edit
    dialog has no class picker and always posts every class, a superset Locust handles.
    """
    wanted, running = set(wanted), set(running)
    if state in IDLE_STATES or not wanted or running <= wanted:
        return ""
    return (
        f"the test is {state} with {', '.join(sorted(running))}: press Stop and wait for "
        "STOPPED before starting another user class"
    )


def _live_classes(environment: Environment) -> list[str]:
    """The classes that have users alive (on the workers, for a master): those must not go."""
    runner = environment.runner
    try:
        counts = runner.user_classes_count if runner is not None else {}
    except KeyError:  # Locust's own count breaks once classes were switched under it
        counts = {cls.__name__: 1 for cls in environment.user_classes}
    return [name for name, count in counts.items() if count > 0]


def _add_swarm_guard(environment: Environment) -> None:
    """Refuse a /swarm that Locust would accept and then fail on; the web UI shows why."""
    web_ui = environment.web_ui
    assert web_ui is not None
    app = web_ui.app
    assert app is not None  # declared Optional by locust, but WebUI.__init__ always builds it

    @app.before_request
    def refuse_bad_swarm() -> Response | None:
        if request.method != "POST" or not request.path.endswith("/swarm"):
            return None
        runner = environment.runner
        state = runner.state if runner is not None else STATE_INIT
        running = _live_classes(environment)
        wanted = request.form.getlist("user_classes")
        message = think_time_error(request.form.get("kab_think_time")) or class_change_error(
            wanted, running, state
        )
        if not message:
            return None
        logger.warning("refused /swarm: %s", message)
        return jsonify({"success": False, "message": message, "host": environment.host})


def _add_routes(environment: Environment, watch: ServerWatch | None) -> None:
    """The JSON, the charts page, the CSV, and the tab's rows on the UI's own stats poll."""
    web_ui = environment.web_ui
    assert web_ui is not None
    app = web_ui.app
    assert app is not None  # declared Optional by locust, but WebUI.__init__ always builds it
    web_ui.template_args.update(TAB_TEMPLATE_ARGS)  # update_template_args() keeps extra keys

    def rows() -> list[dict[str, str]]:
        return watch.rows() if watch is not None else _no_watch_rows()

    @app.route(STATS_ROUTE)
    def server_stats() -> Response:
        body = watch.snapshot() if watch is not None else {"error": "no --kab-control-url"}
        return Response(json.dumps(body), mimetype="application/json")

    @app.route(CHARTS_ROUTE)
    def server_charts() -> Response:
        return Response(CHARTS_PAGE.read_text(), mimetype="text/html")

    @app.route(CSV_ROUTE)
    def server_csv() -> Response:
        body = _csv(watch) if watch is not None else ""
        headers = {"Content-Disposition": "attachment; filename=server_side.csv"}
        return Response(body, mimetype="text/csv", headers=headers)

    @app.after_request
    def add_tab_rows(response: Response) -> Response:
        if request.path.endswith("/stats/requests") and response.is_json:
            extended = [{"key": TAB_KEY, "data": rows()}]
            response.set_data(json.dumps({**response.get_json(), "extended_stats": extended}))
        return response


@events.init.add_listener
def _on_init(environment: Environment, web_ui: Any = None, **_kwargs: Any) -> None:
    if web_ui is None or not isinstance(environment.runner, LocalRunner | MasterRunner):
        return  # workers and headless runs: nothing to show, nothing to sample
    opts = environment.parsed_options
    control_url = getattr(opts, "kab_control_url", "") if opts is not None else ""
    watch = None
    if control_url:
        watch = ServerWatch(control_url, _server_port(environment.host or ""))
        gevent.spawn(_sample_forever, watch)
        environment.events.test_start.add_listener(lambda **_: watch.mark_test_start())
        environment.events.reset_stats.add_listener(lambda **_: watch.mark_test_start())
    _add_routes(environment, watch)
    _add_swarm_guard(environment)
