// cdp.js: what a user of cdp's gRPC API writes in node, shared by the
// interop tests, the integration scenarios and the crash load generator.
//
// It loads proto/ the way a grpc-js user would (proto-loader, the repo's
// proto folder as include dir, the well-known types from proto-loader's own
// copies) with the options of grpc-js' examples: field names as in the
// .proto (keepCase), enums as their names, 64-bit integers as strings,
// defaults filled in. On top of the generated clients it offers promise
// wrappers, google.protobuf.Struct conversion, event builders and bounded
// polling. It knows nothing of how cdp is implemented.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PROTO_DIR = path.join(REPO, 'proto');
const PROTO_FILES = [
  'cdp/v1/ingestion.proto',
  'cdp/v1/identity.proto',
  'cdp/v1/profile.proto',
  'cdp/v1/segmentation.proto',
  'cdp/v1/consent.proto',
  'cdp/v1/activation.proto',
  'grpc/health/v1/health.proto',
];
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};
const DEFAULT_DEADLINE_MS = 5000;
const DEFAULT_POLL_MS = 100;
// Channel options: reconnect quickly after a service restarts (grpc-js backs
// off up to 120 s by default), and give every client its own subchannels so
// that one client's backoff after a refused connection does not delay a
// fresh client to the same address.
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.use_local_subchannel_pool': 1,
};

const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
const loaded = grpc.loadPackageDefinition(definition);
const v1 = loaded.cdp.v1;
const Health = loaded.grpc.health.v1.Health;

const SERVICES = {
  ingestion: { ctor: v1.Ingestion, health: 'cdp.v1.Ingestion' },
  identity: { ctor: v1.Identity, health: 'cdp.v1.Identity' },
  profile: { ctor: v1.Profile, health: 'cdp.v1.Profile' },
  segmentation: { ctor: v1.Segmentation, health: 'cdp.v1.Segmentation' },
  consent: { ctor: v1.Consent, health: 'cdp.v1.Consent' },
  activation: { ctor: v1.Activation, health: 'cdp.v1.Activation' },
};

// client(kind, addr): a client of the cdp.v1 service `kind` at "host:port".
function client(kind, addr) {
  return new SERVICES[kind].ctor(addr, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

// serviceDefinition(kind): the grpc-js service definition of cdp.v1 `kind`,
// for stand-in servers in tests.
function serviceDefinition(kind) {
  return SERVICES[kind].ctor.service;
}

function healthClient(addr) {
  return new Health(addr, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

// call(client, method, request, deadlineMs) -> Promise of the reply; rejects
// with the grpc-js error (err.code is a grpc.status, err.details the text).
function call(c, method, request, deadlineMs = DEFAULT_DEADLINE_MS) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + deadlineMs);
    c[method](request, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// callStatus(...) -> Promise of { code, details, reply }: never rejects, for
// tests that expect a non-OK status.
async function callStatus(c, method, request, deadlineMs = DEFAULT_DEADLINE_MS) {
  try {
    const reply = await call(c, method, request, deadlineMs);
    return { code: grpc.status.OK, details: '', reply };
  } catch (err) {
    return { code: err.code, details: err.details || err.message, reply: null };
  }
}

// ---------------------------------------------------------------- values

// toValue / toStruct: plain JSON -> google.protobuf.Value / Struct objects.
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

// fromValue / fromStruct: the reverse, using the `kind` oneof name.
function fromValue(v) {
  switch (v.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    case 'structValue': return fromStruct(v.structValue);
    default: return undefined;
  }
}

function fromStruct(s) {
  const out = {};
  if (!s || !s.fields) return out;
  for (const [k, v] of Object.entries(s.fields)) out[k] = fromValue(v);
  return out;
}

function timestamp(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

// ---------------------------------------------------------------- events

// ident(type, value): an Identifier.
function ident(type, value) {
  return { type, value };
}

// trackEvent({ id, event, ids, properties, channel, tsMs }): a track event.
function trackEvent({ id, event, ids = [], properties, channel = '', tsMs }) {
  const e = { message_id: id, type: 'EVENT_TYPE_TRACK', event, identifiers: ids, channel };
  if (properties) e.properties = toStruct(properties);
  if (tsMs !== undefined) e.timestamp = timestamp(tsMs);
  return e;
}

function identifyEvent({ id, ids = [], traits, channel = '', tsMs }) {
  const e = { message_id: id, type: 'EVENT_TYPE_IDENTIFY', identifiers: ids, channel };
  if (traits) e.traits = toStruct(traits);
  if (tsMs !== undefined) e.timestamp = timestamp(tsMs);
  return e;
}

function messageEvent({ id, ids = [], channel, text, direction = 'MESSAGE_DIRECTION_INBOUND', tsMs }) {
  const e = {
    message_id: id,
    type: 'EVENT_TYPE_MESSAGE',
    identifiers: ids,
    channel,
    message: { channel, direction, text, conversation_id: `conv-${id}` },
  };
  if (tsMs !== undefined) e.timestamp = timestamp(tsMs);
  return e;
}

// ---------------------------------------------------------------- profiles

// counts(profile) -> { name: Number } from the map<string,int64>.
function counts(profile) {
  const out = {};
  for (const [k, v] of Object.entries(profile.event_counts || {})) out[k] = Number(v);
  return out;
}

// getProfile(profileClient, identifier) -> the ProfileView, or null on
// NOT_FOUND. Other errors reject.
async function getProfile(pc, identifier, deadlineMs) {
  try {
    return await call(pc, 'GetProfile', { identifier }, deadlineMs);
  } catch (err) {
    if (err.code === grpc.status.NOT_FOUND) return null;
    throw err;
  }
}

// ---------------------------------------------------------------- waiting

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// waitFor(what, fn, timeoutMs): calls async fn until it returns a truthy
// value, which it returns; throws "timed out waiting for <what>" (with the
// last value or error seen) when timeoutMs passes.
async function waitFor(what, fn, timeoutMs, pollMs = DEFAULT_POLL_MS) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      const seen = last instanceof Error ? `${last.code || ''} ${last.message}` : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${seen})`);
    }
    await sleep(pollMs);
  }
}

// healthStatus(addr, service) -> 'SERVING' | 'NOT_SERVING' | ... or the
// error's code name when the call fails.
async function healthStatus(addr, service = '', deadlineMs = 1000) {
  const h = healthClient(addr);
  try {
    const r = await call(h, 'Check', { service }, deadlineMs);
    return r.status;
  } catch (err) {
    return `error:${err.code}`;
  } finally {
    h.close();
  }
}

// env(name): a required environment variable.
function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (the tests/integration/test_*.sh wrappers set it)`);
  return v;
}

// runId(): the unique id of this run, for message ids and identifier values
// that do not collide with other runs on a shared Redis.
function runId() {
  return process.env.CDP_TEST_RUN_ID || `${Date.now()}-${process.pid}`;
}

// rng(seed): a small deterministic PRNG (mulberry32) returning [0, 1).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

module.exports = {
  grpc,
  status: grpc.status,
  SERVICES,
  client,
  serviceDefinition,
  healthClient,
  call,
  callStatus,
  toStruct,
  fromStruct,
  timestamp,
  ident,
  trackEvent,
  identifyEvent,
  messageEvent,
  counts,
  getProfile,
  waitFor,
  sleep,
  healthStatus,
  env,
  runId,
  rng,
};
