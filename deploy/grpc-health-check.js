#!/usr/bin/env node
// grpc-health-check: one grpc.health.v1.Health/Check call, for scripts such
// as deploy/run-local that must know a service answers gRPC, not just HTTP.
//
//   node deploy/grpc-health-check.js HOST:PORT [SERVICE] [--deadline-ms N]
//
// Prints the serving status and exits 0 when it is SERVING, 1 for any other
// status, 2 when the call itself fails (refused, deadline, unknown method...)
// and 64 on bad usage. SERVICE defaults to "" (the whole server). It uses the
// grpc-js packages of tests/interop (npm install there first) and loads the
// health contract from proto/grpc/health/v1/health.proto.
'use strict';

const path = require('path');
const { createRequire } = require('module');

const ROOT = path.resolve(__dirname, '..');
const interopRequire = createRequire(path.join(ROOT, 'tests', 'interop', 'package.json'));
const grpc = interopRequire('@grpc/grpc-js');
const protoLoader = interopRequire('@grpc/proto-loader');

const DEFAULT_DEADLINE_MS = 1000;
const EXIT_SERVING = 0;
const EXIT_NOT_SERVING = 1;
const EXIT_CALL_FAILED = 2;
const EXIT_USAGE = 64;

// parseArgs(argv) -> { target, service, deadlineMs } or null when malformed.
function parseArgs(argv) {
  const positional = [];
  let deadlineMs = DEFAULT_DEADLINE_MS;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--deadline-ms') {
      deadlineMs = Number(argv[++i]);
      if (!Number.isInteger(deadlineMs) || deadlineMs <= 0) return null;
    } else {
      positional.push(argv[i]);
    }
  }
  if (positional.length < 1 || positional.length > 2) return null;
  return { target: positional[0], service: positional[1] || '', deadlineMs };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args) {
    process.stderr.write('usage: grpc-health-check.js HOST:PORT [SERVICE] [--deadline-ms N]\n');
    process.exit(EXIT_USAGE);
  }
  const definition = protoLoader.loadSync('grpc/health/v1/health.proto', {
    includeDirs: [path.join(ROOT, 'proto')],
    keepCase: true,
    enums: String,
    defaults: true,
  });
  const { Health } = grpc.loadPackageDefinition(definition).grpc.health.v1;
  const client = new Health(args.target, grpc.credentials.createInsecure());
  const deadline = new Date(Date.now() + args.deadlineMs);
  client.Check({ service: args.service }, { deadline }, (err, reply) => {
    client.close();
    if (err) {
      process.stdout.write(`${args.target} ${args.service || '""'}: ${err.message}\n`);
      process.exit(EXIT_CALL_FAILED);
    }
    process.stdout.write(`${args.target} ${args.service || '""'}: ${reply.status}\n`);
    process.exit(reply.status === 'SERVING' ? EXIT_SERVING : EXIT_NOT_SERVING);
  });
}

main();
