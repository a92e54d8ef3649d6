#!/usr/bin/env node
// Control a mixgraph server from Node.js with the `osc` package (osc.js).
//
//   npm ci --ignore-scripts          # once, in this folder
//   node mixgraph.js [--tcp] [HOST] [PORT] [NODE_NAME]
//
// Adds a gain node, sets its gain to -6 dB, queries it, reads /status and
// removes the node, printing every reply as `address arg arg ...`. Every
// command waits for the reply that matches it: `/done <address> ...`,
// `/fail <address> ... <reason>` or, for a query, the address itself.
// Over UDP replies come back to the port we send from; over TCP (--tcp,
// osc.js frames packets with SLIP, OSC 1.1) they come back on the connection.
"use strict";

const osc = require("osc");

const argv = process.argv.slice(2);
const tcp = argv.includes("--tcp");
const [host = "127.0.0.1", port = "8000", name = "js_g"] = argv.filter((a) => a !== "--tcp");

const port_ = tcp
  ? new osc.TCPSocketPort({ address: host, port: Number(port), metadata: true })
  : new osc.UDPPort({
      localAddress: "0.0.0.0", localPort: 0,
      remoteAddress: host, remotePort: Number(port), metadata: true,
    });

const pending = []; // [{address, resolve}]

function show(msg) {
  const args = msg.args.map((a) => (a.type === "b" ? `<blob ${a.value.length}>` : String(a.value)));
  console.log([msg.address, ...args].join(" "));
}

port_.on("message", (msg) => {
  const first = msg.args.length ? msg.args[0].value : undefined;
  const i = pending.findIndex((p) =>
    ((msg.address === "/done" || msg.address === "/fail") && first === p.address) ||
    msg.address === p.address || msg.address === p.address + ".reply");
  if (i >= 0) {
    const [p] = pending.splice(i, 1);
    p.resolve(msg);
  }
});

// OSC arguments with explicit types: strings "s", numbers "f" unless integers are asked for
function arg(v) {
  if (typeof v === "string") return { type: "s", value: v };
  if (typeof v === "object") return v; // already {type, value}
  return { type: "f", value: v };
}

function request(address, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply to ${address}`)), 3000);
    pending.push({ address, resolve: (m) => { clearTimeout(timer); resolve(m); } });
    port_.send({ address, args: args.map(arg) });
  });
}

async function call(address, ...args) {
  const m = await request(address, ...args);
  show(m);
  if (m.address === "/fail") throw new Error(`${address} failed: ${m.args[m.args.length - 1].value}`);
  return m;
}

async function main() {
  await call("/graph/add", "gain", name);
  await call(`/node/${name}/gain`, -6.0);
  const q = await call(`/node/${name}/gain`);           // a query: no arguments
  const st = await call("/status");
  const status = {};
  for (let i = 0; i + 1 < st.args.length; i += 2) status[st.args[i].value] = st.args[i + 1].value;
  console.log(`# gain is ${q.args[0].value} dB; the server has ${status.nodes} nodes, ` +
              `DSP load ${Number(status.load).toFixed(2)}%, ${status.xruns} xruns`);
  await call("/graph/remove", name);
}

port_.on("ready", () => {
  main().then(() => { port_.close(); process.exit(0); })
        .catch((e) => { console.error(String(e)); port_.close(); process.exit(1); });
});
port_.on("error", (e) => { console.error(String(e)); process.exit(2); });
port_.open();
