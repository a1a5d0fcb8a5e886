// Node's http.Agent({keepAlive: true}) in the idle-timeout race; the same protocol as
// race_client.py: node race_client.mjs METHOD URL CONTROL_URL WAIT_S[,WAIT_S...] -> one JSON list.
import http from "node:http";

const BODY = "race-body-0123456789";
const [method, url, control, waits] = process.argv.slice(2);

function counters() {
  return new Promise((resolve, reject) => {
    http.get(control + "/counters", { agent: false }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => {
        const body = JSON.parse(data);
        resolve([body.connections_accepted, body.requests_served]);
      });
    }).on("error", reject);
  });
}

function request(agent, stats) {
  return new Promise((resolve) => {
    const req = http.request(url, { method, agent, timeout: 10000 }, (res) => {
      res.resume();
      res.on("end", () => resolve([res.statusCode, ""]));
    });
    req.on("error", (err) => resolve([0, err.code || err.name]));
    if (method === "POST") req.end(BODY);
    else req.end();
  });
}

async function trial(wait) {
  const agent = new http.Agent({ keepAlive: true });
  const stats = { created: 0 };
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => {
    stats.created += 1;
    return create(...args);
  };
  try {
    let [status, error] = await request(agent, stats);
    const primed = performance.now();
    if (status !== 200) return { wait_s: wait, status, error: `priming: ${error || status}` };
    const [a0, s0] = await counters();
    await new Promise((r) => setTimeout(r, Math.max(0, primed + wait * 1000 - performance.now())));
    const slept = (performance.now() - primed) / 1000; // the real wait: timers run late when busy
    stats.created = 0;
    [status, error] = await request(agent, stats);
    const [a1, s1] = await counters();
    // Node never retries by itself: more sockets than one new one would be a retry
    return { wait_s: wait, actual_wait_s: slept, status, error, retries: Math.max(0, stats.created - 1),
             accepted: a1 - a0, served: s1 - s0 };
  } finally {
    agent.destroy();
  }
}

const out = [];
for (const w of waits.split(",")) out.push(await trial(Number(w)));
process.stdout.write(JSON.stringify(out) + "\n");
