// Node's own http server behind the reference servers' interface (run by servers/node_server.py,
// which validates the options, binds the socket and execs this script with a JSON config).
//
// Configured as a Node user would: keepAliveTimeout = T, maxRequestsPerSocket = N, headersTimeout
// = H (checked every 250 ms instead of Node's 30 s, so H is enforced within that). T = 0 sends
// every response with `Connection: close` (Node's keepAliveTimeout 0 would mean "never time out").
// The endpoints are servers/endpoints.py's, written again in JavaScript. Prints the READY line,
// serves /counters on a second port, writes --log-connections lines, and stops on SIGTERM/SIGINT
// (idle connections at once, requests in progress for up to 3 s).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const cfg = JSON.parse(process.argv[2]);
const HELLO = 'Hello, keep-alive!\n';
const TEXT = 'text/plain; charset=utf-8';
const MAX_BYTES = 16 * 1024 * 1024;
const MAX_SLEEP_MS = 60000;
const SHUTDOWN_GRACE_MS = 3000;
const CHECK_INTERVAL_MS = 250;
const NO_BODY = new Set([204, 304]);

// Close reasons are counted only when this script knows them: the response it sent asked to
// close (why: the request's Connection header or HTTP/1.0, T = 0, /close), Node's idle timer
// fired, or the client closed first. Others (Node's header timeout, errors) are not guessed.
const counters = {
  accepted: 0, open: 0, peak: 0, requests: 0, closed: {}, tlsHandshakes: 0, tlsResumed: 0,
};
let nextId = 1;
let stopping = false;

function countClose(reason) {
  if (reason) counters.closed[reason] = (counters.closed[reason] || 0) + 1;
}

function digits(text) {
  return /^[0-9]{1,9}$/.test(text) ? Number(text) : null;
}

function reply(status, body = '', type = TEXT, extra = {}) {
  return { status, body: Buffer.from(body), type, delayMs: 0, close: false, ...extra };
}

// servers/endpoints.py's route(), answer for answer.
function route(target, peer) {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);
  if (path === '/') return reply(200, HELLO);
  if (path.startsWith('/bytes/')) {
    const size = digits(path.slice(7));
    if (size === null || size > MAX_BYTES) return reply(400, 'bad request\n');
    return reply(200, Buffer.alloc(size, 'x'), 'application/octet-stream');
  }
  if (path === '/sleep') {
    const value = new URLSearchParams(query).get('ms');
    const ms = digits(value === null || value === '' ? '0' : value);
    if (ms === null || ms > MAX_SLEEP_MS) return reply(400, 'bad request\n');
    return reply(200, 'slept\n', TEXT, { delayMs: ms });
  }
  if (path === '/peer') return reply(200, peerJson(peer), 'application/json');
  if (path.startsWith('/status/')) {
    const code = digits(path.slice(8));
    if (code === null || code < 200 || code > 599) return reply(400, 'bad request\n');
    return reply(code);
  }
  if (path === '/close') return reply(200, 'closing\n', TEXT, { close: true });
  if (path.includes('://')) {
    const rest = path.split('://', 2)[1];
    const slash = rest.indexOf('/');
    const origin = slash < 0 ? '/' : rest.slice(slash);
    return route(origin + (query ? '?' + query : ''), peer);
  }
  return reply(404, 'not found\n');
}

// The same text as Python's json.dumps (", " and ": " separators).
function peerJson(peer) {
  return Object.entries(peer).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(', ').replace(/^/, '{') + '}';
}

function clientAsksClose(req) {
  const tokens = String(req.headers.connection || '').toLowerCase().split(',').map((t) => t.trim());
  if (tokens.includes('close')) return true;
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && !tokens.includes('keep-alive');
}

function handle(req, res) {
  const socket = req.socket;
  socket.kabRequests += 1;
  const peer = {
    client_host: socket.remoteAddress,
    client_port: socket.remotePort,
    connection_id: socket.kabId,
    request_number: socket.kabRequests,
  };
  if (cfg.logConnections) {
    const conn = req.headers.connection || '-';
    process.stderr.write(`port=${peer.client_port} conn=${peer.connection_id} req=${peer.request_number} ` +
      `${req.method} ${req.url} connection=${conn}\n`);
  }
  const answer = route(req.url, peer);
  let why = null;
  if (clientAsksClose(req)) why = 'client_requested';
  else if (cfg.keepAliveTimeoutMs === 0) why = 'keepalive_disabled';
  else if (answer.close) why = 'handler';
  else if (stopping) why = 'shutdown';
  if (why && why !== 'client_requested') res.shouldKeepAlive = false;
  res.on('finish', () => {
    counters.requests += 1;
    if (!res.shouldKeepAlive) socket.kabReason = why;
  });
  const send = () => {
    const headers = NO_BODY.has(answer.status) ? {} :
      { 'Content-Type': answer.type, 'Content-Length': answer.body.length };
    res.writeHead(answer.status, headers);
    res.end(NO_BODY.has(answer.status) ? undefined : answer.body);
  };
  // The body is read in full (and ignored) before the answer, like the reference servers.
  req.resume();
  req.on('end', () => (answer.delayMs ? setTimeout(send, answer.delayMs) : send()));
}

// Every accepted TCP connection counts (over TLS too, before its handshake).
function onTcp(socket) {
  counters.accepted += 1;
  counters.open += 1;
  counters.peak = Math.max(counters.peak, counters.open);
  socket.on('close', () => { counters.open -= 1; });
}

// The stream requests arrive on (the TLS socket over TLS): ids, request numbers, close reasons.
function onStream(stream) {
  stream.kabId = nextId++;
  stream.kabRequests = 0;
  stream.kabReason = null;
  stream.on('timeout', () => { stream.kabTimedOut = true; });
  stream.on('end', () => { stream.kabEnded = true; });
  stream.on('close', () => {
    countClose(stream.kabReason || (stream.kabTimedOut ? 'idle_timeout' : null) ||
      (stream.kabEnded ? 'client_closed' : null));
  });
}

const options = {
  keepAliveTimeout: cfg.keepAliveTimeoutMs,
  headersTimeout: cfg.headersTimeoutMs,
  requestTimeout: Math.max(300000, cfg.headersTimeoutMs),
  connectionsCheckingInterval: CHECK_INTERVAL_MS,
};
let server;
if (cfg.tls) {
  options.cert = fs.readFileSync(cfg.tls.cert);
  options.key = fs.readFileSync(cfg.tls.key);
  if (cfg.tls.version) {
    options.minVersion = cfg.tls.version;
    options.maxVersion = cfg.tls.version;
  }
  server = https.createServer(options, handle);
  // TLS 1.2 session IDs: Node keeps no server-side cache unless asked (tickets, 1.2's and 1.3's,
  // are on by default, with a key per server). A small in-memory one, as in Node's docs.
  const sessions = new Map();
  server.on('newSession', (id, data, done) => {
    if (sessions.size >= 10000) sessions.delete(sessions.keys().next().value);
    sessions.set(id.toString('hex'), data);
    done();
  });
  server.on('resumeSession', (id, done) => done(null, sessions.get(id.toString('hex')) || null));
  server.on('connection', onTcp);
  server.on('secureConnection', (stream) => {
    counters.tlsHandshakes += 1;
    if (stream.isSessionReused()) counters.tlsResumed += 1;
    onStream(stream);
  });
} else {
  server = http.createServer(options, handle);
  server.on('connection', (socket) => { onTcp(socket); onStream(socket); });
}
server.keepAliveTimeout = cfg.keepAliveTimeoutMs;
server.maxRequestsPerSocket = cfg.maxRequests;

const control = http.createServer((req, res) => {
  if (req.url.split('?')[0] !== '/counters') {
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
    return;
  }
  const body = JSON.stringify({
    server: 'node',
    pid: process.pid,
    connections_accepted: counters.accepted,
    connections_open: counters.open,
    connections_peak_open: counters.peak,
    requests_served: counters.requests,
    closed: counters.closed,
    ...(cfg.tls ? { tls_handshakes: counters.tlsHandshakes, tls_resumed: counters.tlsResumed } : {}),
    source: `node ${process.version} http server`,
  });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});

function cleanUp() {
  if (cfg.workdir) fs.rmSync(cfg.workdir, { recursive: true, force: true });
}

// Idle connections close at once, requests in progress get SHUTDOWN_GRACE_MS; then exit 0
// whatever is still open (the timer is the guarantee, so nothing in between may throw past it).
function shutdown() {
  if (stopping) return;
  stopping = true;
  setTimeout(() => {
    try { server.closeAllConnections(); } finally { process.exit(0); }
  }, SHUTDOWN_GRACE_MS);
  for (const step of [() => control.close(), () => server.close(() => process.exit(0)),
    () => server.closeIdleConnections()]) {
    try { step(); } catch (err) { process.stderr.write(`node server: stopping: ${err}\n`); }
  }
}

process.on('exit', cleanUp);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen({ fd: cfg.fd }, () => {
  control.listen(0, cfg.host, () => {
    const words = ['READY', cfg.url, `control=http://${cfg.urlHost}:${control.address().port}`,
      `pid=${process.pid}`, 'server=node'];
    if (cfg.ca) words.push(`ca=${cfg.ca}`);
    process.stdout.write(words.join(' ') + '\n');
  });
});
