// retry.test.js: a service's outbound retries carry the whole request.
//
// cdp's services retry an outbound call that failed UNAVAILABLE. Here a
// stand-in for identity (a grpc-js server speaking cdp.v1.Identity from
// proto/) answers the first Lookup UNAVAILABLE and records every request;
// a profile instance pointed at it (CDP_IDENTITY_ADDR) must send the same
// LookupRequest again and pass the stand-in's final answer on to its caller.
//
// Needs CDP_TEST_FAKE_IDENTITY_PORT and CDP_TEST_PROFILE_FAKE_ADDR (set by
// tests/integration/test_interop.sh); skipped without them.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('./lib/cdp');

const FAIL_FIRST = 1;

const port = process.env.CDP_TEST_FAKE_IDENTITY_PORT;
const profileAddr = process.env.CDP_TEST_PROFILE_FAKE_ADDR;
const skip = !(port && profileAddr) && 'CDP_TEST_FAKE_IDENTITY_PORT / CDP_TEST_PROFILE_FAKE_ADDR not set';

// startFakeIdentity() -> { server, requests }: Lookup fails UNAVAILABLE
// FAIL_FIRST times, then answers NOT_FOUND; every request is recorded.
function startFakeIdentity() {
  const requests = [];
  const server = new cdp.grpc.Server();
  const unimplemented = (call, cb) => cb({ code: cdp.status.UNIMPLEMENTED });
  server.addService(cdp.serviceDefinition('identity'), {
    Lookup: (call, cb) => {
      requests.push(call.request);
      if (requests.length <= FAIL_FIRST) cb({ code: cdp.status.UNAVAILABLE, details: 'try again' });
      else cb({ code: cdp.status.NOT_FOUND, details: 'identifier not found' });
    },
    Resolve: unimplemented,
    ResolveBatch: unimplemented,
    GetIdentities: unimplemented,
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, cdp.grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) reject(err);
      else resolve({ server, requests });
    });
  });
}

test('profile retries an UNAVAILABLE identity Lookup with the same request', { skip }, async () => {
  const { server, requests } = await startFakeIdentity();
  const prf = cdp.client('profile', profileAddr);
  try {
    const who = cdp.ident('email', `retry.${cdp.runId()}@example.com`);
    const r = await cdp.callStatus(prf, 'GetProfile', { identifier: who }, 10000);
    assert.ok(requests.length > FAIL_FIRST, `identity saw ${requests.length} Lookup(s); a retry was expected`);
    requests.forEach((req, i) => {
      assert.deepEqual(req.identifier, who, `Lookup attempt ${i + 1} carried ${JSON.stringify(req)}`);
    });
    assert.equal(r.code, cdp.status.NOT_FOUND, `GetProfile: ${r.code} ${r.details}`);
  } finally {
    prf.close();
    server.forceShutdown();
  }
});
