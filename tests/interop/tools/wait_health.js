#!/usr/bin/env node
// wait_health: polls grpc.health.v1.Health/Check ("" = the whole server) on
// every address until all report the wanted status, for the integration
// test scripts (tests/integration/lib.sh wait_status).
//
//   node wait_health.js --status SERVING|NOT_SERVING --timeout-ms N HOST:PORT...
//
// Exits 0 once every address reported the status, 1 when the time ran out
// (printing the last status of each), 64 on bad usage.
'use strict';

const cdp = require('../lib/cdp');

const POLL_MS = 100;
const CHECK_DEADLINE_MS = 1000;
const EXIT_TIMEOUT = 1;
const EXIT_USAGE = 64;

function parse(argv) {
  const out = { status: 'SERVING', timeoutMs: 30000, addrs: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--status') out.status = argv[++i];
    else if (argv[i] === '--timeout-ms') out.timeoutMs = Number(argv[++i]);
    else out.addrs.push(argv[i]);
  }
  const ok = out.addrs.length > 0 && Number.isInteger(out.timeoutMs) && out.timeoutMs > 0;
  return ok ? out : null;
}

async function main() {
  const args = parse(process.argv.slice(2));
  if (!args) {
    process.stderr.write('usage: wait_health.js --status S --timeout-ms N HOST:PORT...\n');
    process.exit(EXIT_USAGE);
  }
  const last = {};
  const until = Date.now() + args.timeoutMs;
  for (;;) {
    const seen = await Promise.all(args.addrs.map((a) => cdp.healthStatus(a, '', CHECK_DEADLINE_MS)));
    args.addrs.forEach((a, i) => (last[a] = seen[i]));
    if (seen.every((s) => s === args.status)) process.exit(0);
    if (Date.now() > until) {
      process.stderr.write(`wait_health: wanted ${args.status}, last seen ${JSON.stringify(last)}\n`);
      process.exit(EXIT_TIMEOUT);
    }
    await cdp.sleep(POLL_MS);
  }
}

main();
