"""`python -m benchmarks doctor URL`: what one real server does with idle connections.

Every figure is measured on raw sockets against the URL given and nothing else: the idle timeout
from the end of a response to the server's FIN or reset, the number of requests a connection
carries until the server says `Connection: close` or closes, pipelining, how it closes, its header
deadline and, over TLS, the handshake and session resumption. The advertised `Keep-Alive` header
is reported next to the measured figures, never instead of them. The verdicts then compare the
measured idle timeout with the defaults of common clients and load balancers
(`defaults.toml`, each with its source).

Modules, one concern each: `target` (the URL and the one address probed), `headers` (response
head parsing), `wire` (a raw connection that frames responses and times closes), `probes` (the
raw-socket probes), `tlsprobe` (TLS facts), `defaults` (the data file), `verdicts`, `render`
(human and JSON), `cli` (the command and its progress).
"""
