# Thin targets: one command each; knobs are make variables turned into flags.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Knobs shared by bench, bench-compare and noise (empty = the command's default): each variable
# sets the `python -m benchmarks run` flag of the same name in lower case (KEEPALIVE_MAX=0 is
# --keepalive-max 0, TLS=1.2,1.3 is --tls 1.2,1.3); a switch is on when set (QUICK=1 is --quick).
# The lists are benchmarks.matrix's dimensions and run settings (tests/test_matrix.py checks that
# they agree).
BENCH_VALUES   := SERVERS CLIENTS MODES TLS CONCURRENCY KEEPALIVE_TIMEOUT KEEPALIVE_MAX RTT LOSS \
	BANDWIDTH TARGET DURATION WARMUP REPEAT WORKERS
BENCH_SWITCHES := QUICK NETNS
lower = $(subst Z,z,$(subst Y,y,$(subst X,x,$(subst W,w,$(subst V,v,$(subst U,u,$(subst T,t,$(subst S,s,$(subst R,r,$(subst Q,q,$(subst P,p,$(subst O,o,$(subst N,n,$(subst M,m,$(subst L,l,$(subst K,k,$(subst J,j,$(subst I,i,$(subst H,h,$(subst G,g,$(subst F,f,$(subst E,e,$(subst D,d,$(subst C,c,$(subst B,b,$(subst A,a,$(1)))))))))))))))))))))))))))
flag_of = --$(subst _,-,$(call lower,$(1)))
BENCH_FLAGS = $(strip $(foreach v,$(BENCH_SWITCHES),$(if $($(v)),$(call flag_of,$(v)))) \
	$(foreach v,$(BENCH_VALUES),$(if $($(v)),$(call flag_of,$(v)) $($(v)))))

.PHONY: install lock test lint bench compare bench-compare noise report serverperf servers-perf \
	ceiling instructions demo ui test-browser clean doctor fuzz conformance-report race ports slots \
	pageload test-pageload-browser

install: $(STAMP)

# Installs the locked versions (requirements.txt: every package pinned, with its hashes), then
# this project without resolving anything again; re-runs only when the lock or pyproject.toml
# changed. No bytecode compilation at install (25 s of a 70 s install): modules compile on import.
# PYTHONWARNINGS: setuptools warns about editable installs in general, on every install.
PIP := $(PY) -m pip install -q --no-compile --disable-pip-version-check
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV) && $(PIP) --require-hashes -r requirements.txt && \
	  PYTHONWARNINGS=ignore $(PIP) --no-deps --no-build-isolation -e . && touch $(STAMP)

# Re-resolves requirements.txt from pyproject.toml (main and dev dependencies) in a venv of its
# own, keeping every pin that still fits; UPGRADE=1 moves all of them to the newest allowed.
# Run it after changing a dependency and commit both files.
LOCK_VENV := .venv-lock
lock:
	$(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools==7.7.0 && \
	  $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --extra dev --strip-extras \
	  --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) -o requirements.txt pyproject.toml

# Most tests wait on server timers, so one worker per core (nproc: two halve the wall time on a
# 2-core machine); a file's tests stay on one worker (its server pools are per module).
# TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ruff (lint and formatting) and mypy; mypy's files and settings are in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# TARGET=URL [TARGET_PID=PID] [CA=PEM | INSECURE=1]: every client against an existing loopback
# server, not ours; TARGET_CMD="CMD" RTT=MS [TARGET_PORT=] runs yours behind the delay line.
bench: TARGET_FLAGS = $(if $(TARGET_PID),--target-pid $(TARGET_PID)) $(if $(CA),--target-ca '$(CA)') \
	$(if $(INSECURE),--target-insecure) $(if $(TARGET_CMD),--target-command '$(TARGET_CMD)') \
	$(if $(TARGET_PORT),--target-port $(TARGET_PORT))
bench: install
	$(PY) -m benchmarks run $(BENCH_FLAGS) $(strip $(TARGET_FLAGS))

compare: install
	$(PY) -m benchmarks compare $(BASE) $(NEW) $(COMPARE_FLAGS)

bench-compare: install
	$(PY) -m benchmarks bench-compare --base $(BASE) $(if $(ROUNDS),--rounds $(ROUNDS)) $(BENCH_FLAGS)

noise: install
	$(PY) -m benchmarks noise $(if $(ROUNDS),--rounds $(ROUNDS)) $(BENCH_FLAGS)

report: install
	$(PY) -m benchmarks report $(CSV)

# wrk against each reference server, next to nginx and bare apps (issues 2 and 14's targets),
# then callgrind's instructions per request beside every ratio (NO_INSTRUCTIONS=1 skips them).
# `servers-perf` is its old name, kept as an alias.
servers-perf: serverperf
serverperf: install
	$(PY) -m benchmarks serverperf $(if $(DURATION),--duration $(DURATION)) \
	  $(if $(PERF_SERVERS),--servers $(PERF_SERVERS)) $(if $(KEEPALIVE_MAX),--keepalive-max $(KEEPALIVE_MAX)) \
	  $(if $(NO_INSTRUCTIONS),,--instructions)

# The fastest pyperf client against wrk on the uvloop server: how close a Python client gets.
ceiling: install
	$(PY) -m benchmarks ceiling $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(DURATION),--duration $(DURATION))

# Instructions per request of each server under callgrind (valgrind), independent of the load.
instructions: install
	$(PY) -m benchmarks instructions $(if $(PERF_SERVERS),--servers $(PERF_SERVERS)) \
	  $(if $(REQUESTS),--requests $(REQUESTS))

# Real keep-alive behaviour of any server: make doctor URL=http://127.0.0.1:8080/ [MAX_IDLE=30]
doctor: DOCTOR_FLAGS = $(if $(CA),--ca $(CA)) $(if $(INSECURE),--insecure) \
	$(if $(MAX_IDLE),--max-idle $(MAX_IDLE)) $(if $(MAX_REQUESTS),--max-requests $(MAX_REQUESTS)) \
	$(if $(MAX_HEADER_WAIT),--max-header-wait $(MAX_HEADER_WAIT)) $(if $(JSON),--json)
doctor: install
	$(PY) -m benchmarks doctor '$(URL)' $(strip $(DOCTOR_FLAGS))
# Mutated requests against every reference server (issue 8): crashes, hangs, unrequested 500s,
# framing disagreements. SECONDS is per server; COUNT runs the first N cases of SEED instead.
fuzz: install
	$(PY) -m benchmarks fuzz $(if $(SECONDS),--seconds $(SECONDS)) $(if $(COUNT),--count $(COUNT)) \
	  $(if $(SEED),--seed $(SEED)) $(if $(SERVERS),--servers $(SERVERS)) $(if $(JSON),--json $(JSON))

# The conformance suite against nginx and Node (and ours, for the table), as a report, not a
# gate: make conformance-report [SERVERS=nginx,node]. About 3 minutes.
conformance-report: install
	$(PY) -m benchmarks conformance-report $(if $(SERVERS),--servers $(SERVERS))

# Issue 12: the idle-timeout race per client library and behind nginx (RTT= uses the delay line),
# and ephemeral ports against TIME_WAIT in a client namespace (root). QUICK=1 for a short run.
race: install
	$(PY) -m benchmarks race $(strip $(if $(QUICK),--quick) $(if $(RTT),--rtt $(RTT)) \
	  $(if $(SERVER),--server $(SERVER)) $(if $(KEEPALIVE_TIMEOUT),--timeout $(KEEPALIVE_TIMEOUT)) \
	  $(if $(CLIENTS),--clients $(CLIENTS)))
ports: install
	$(PY) -m benchmarks ports $(strip $(if $(QUICK),--quick) $(if $(RTT),--rtt $(RTT)) \
	  $(if $(SERVER),--server $(SERVER)) $(if $(PORTS),--ports $(PORTS)))
# The 101st connection: SLOTS keep-alive users hold --max-connections, then NEWCOMERS arrive;
# their wait against T (TIMEOUTS=1,2,4), with and without --reclaim-idle, and keep-alive off.
slots: install
	$(PY) -m benchmarks slots $(strip $(if $(QUICK),--quick) $(if $(RTT),--rtt $(RTT)) \
	  $(if $(SERVERS),--servers $(SERVERS)) $(if $(SLOTS),--slots $(SLOTS)) \
	  $(if $(NEWCOMERS),--newcomers $(NEWCOMERS)) $(if $(TIMEOUTS),--timeouts $(TIMEOUTS)))

# The seed experiment, run: client ports in the server log show connection reuse.
demo: install
	$(PY) -m benchmarks demo $(if $(SERVER),--server $(SERVER))

# Locust web UI on a reference server, with a server-side tab; Ctrl-C stops both. The flags are
# a variable (its line breaks become spaces) so make echoes one tidy command line. RTT= (LOSS=,
# BANDWIDTH=) puts server and Locust on the delay line (root); the web UI stays on 127.0.0.1.
ui: UI_FLAGS = $(if $(SERVER),--server $(SERVER)) \
	$(if $(KEEPALIVE_TIMEOUT),--keepalive-timeout $(KEEPALIVE_TIMEOUT)) \
	$(if $(KEEPALIVE_MAX),--keepalive-max $(KEEPALIVE_MAX)) $(if $(TLS),--tls) \
	$(if $(WEB_PORT),--web-port $(WEB_PORT)) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(RTT),--rtt $(RTT)) $(if $(LOSS),--loss $(LOSS)) $(if $(BANDWIDTH),--bandwidth $(BANDWIDTH)) \
	$(LOCUST_ARGS)
ui: install
	$(PY) -m benchmarks ui $(strip $(UI_FLAGS))

# Headless-browser test of the lab, kept out of `make test`: installs Debian's chromium and the
# playwright package (never a browser download) when missing, then runs tests_browser/.
test-browser: install
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)
	$(PY) -m pip install -q --disable-pip-version-check playwright
	$(PY) -m pytest -q tests_browser

# Debian's chromium and the playwright package (never a browser download), when missing.
BROWSER_DEPS = test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium); \
	$(PY) -m pip install -q --disable-pip-version-check playwright

# The seed's question on a page of N resources behind the delay line (issue 11; root). QUICK
# does not install the browser: without it, it runs the Python client alone and says so.
pageload: PAGELOAD_FLAGS = $(if $(QUICK),--quick) $(if $(SERVERS),--servers $(SERVERS)) \
	$(if $(CLIENTS),--clients $(CLIENTS)) $(if $(RTT),--rtt $(RTT)) \
	$(if $(RESOURCES),--resources $(RESOURCES)) $(if $(SIZE),--size $(SIZE)) \
	$(if $(TLS),--tls $(TLS)) $(if $(KEEPALIVE),--keepalive $(KEEPALIVE)) \
	$(if $(KEEPALIVE_TIMEOUT),--keepalive-timeout $(KEEPALIVE_TIMEOUT)) \
	$(if $(KEEPALIVE_MAX),--keepalive-max $(KEEPALIVE_MAX)) $(if $(REPEAT),--repeat $(REPEAT)) \
	$(if $(LOADS),--loads $(LOADS))
pageload: install
	$(if $(QUICK),,$(BROWSER_DEPS))
	$(PY) -m benchmarks pageload $(strip $(PAGELOAD_FLAGS))

# Chromium over the delay line, judged by the server's counters (kept out of `make test`).
test-pageload-browser: install
	$(BROWSER_DEPS)
	$(PY) -m pytest -q tests_browser/test_pageload_browser.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .ruff_cache .mypy_cache
