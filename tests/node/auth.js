// A Node.js client of an rpc-bridge server that authenticates its callers.
//
//   node auth.js HOST:PORT MODE PRINCIPAL [CA CERT KEY]
//
// MODE is token or jwt (the bearer token is read from BRIDGE_TEST_BEARER) or cert (mutual
// TLS with the client certificate CERT/KEY, the server checked against CA). The server's
// policy lets PRINCIPAL call echo and echo_context of topic "topic", nothing else.
// Prints one "ok <check>" line per check and exits 0, or prints the failure and exits 1.
'use strict';

const fs = require('fs');
const assert = require('assert');
const {
  grpc, bridgeV1, failureOf, V, deadline, expectError, run,
} = require('./bridge');

function call(client, method, request, metadata, ms = 10000) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata || new grpc.Metadata(), { deadline: deadline(ms) },
      (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

function envelope(method, args = {}, context = {}) {
  return { target: { topic: 'topic' }, method, args, context };
}

function expectRefusal(err, code, reason) {
  assert.strictEqual(err.code, code, `${err.code}: ${err.details}`);
  assert.strictEqual(failureOf(err).reason, reason);
}

async function main() {
  const [address, mode, principal, ca, cert, key] = process.argv.slice(2);
  const bearer = process.env.BRIDGE_TEST_BEARER;
  const withToken = new grpc.Metadata();
  if (mode !== 'cert') withToken.set('authorization', `Bearer ${bearer}`);
  const channelCredentials = mode === 'cert'
    ? grpc.credentials.createSsl(fs.readFileSync(ca), fs.readFileSync(key), fs.readFileSync(cert))
    : grpc.credentials.createInsecure();
  const client = new bridgeV1.Bridge(address, channelCredentials);

  // 1. Allowed, identified; the identity the caller claims in its context is dropped.
  const forged = V.map({ principal: V.str('root'), mechanism: V.str('token') });
  const reply = await call(client, 'Call', { envelope: envelope('echo_context', {}, {
    bridge_identity: forged, user: V.str('node'),
  }) }, withToken);
  const seen = reply.result.map_value.fields;
  const identity = seen.bridge_identity.map_value.fields;
  assert.strictEqual(identity.principal.string_value, principal);
  assert.strictEqual(identity.mechanism.string_value, mode === 'cert' ? 'mtls' : mode);
  assert.strictEqual(seen.user.string_value, 'node');
  console.log('ok allowed-identified');

  // 2. A method the policy does not allow this caller: PERMISSION_DENIED, Call and Cast.
  const denied = await expectError(call(client, 'Call', { envelope: envelope('fail') }, withToken));
  expectRefusal(denied, grpc.status.PERMISSION_DENIED, 'REASON_PERMISSION_DENIED');
  assert.match(denied.details, /may not call 'fail'/);
  const cast = await expectError(call(client, 'Cast', { envelope: envelope('fail') }, withToken));
  expectRefusal(cast, grpc.status.PERMISSION_DENIED, 'REASON_PERMISSION_DENIED');
  console.log('ok permission-denied');

  // 3. On a stream, each call is admitted on its own; the denied one does not end it.
  const outcomes = await new Promise((resolve, reject) => {
    const got = {};
    const stream = client.CallStream(withToken, { deadline: deadline(10000) });
    stream.on('data', (response) => { got[response.id] = response; });
    stream.on('error', reject);
    stream.on('end', () => resolve(got));
    stream.write({ id: '1', envelope: envelope('echo', { value: V.int(5) }) });
    stream.write({ id: '2', envelope: envelope('fail') });
    stream.end();
  });
  assert.strictEqual(outcomes['1'].result.integer_value, '5');
  assert.strictEqual(outcomes['2'].error.code, grpc.status.PERMISSION_DENIED);
  assert.strictEqual(outcomes['2'].error.failure.reason, 'REASON_PERMISSION_DENIED');
  console.log('ok stream-admitted-per-call');

  if (mode === 'cert') {
    // 4. Without a client certificate the TLS handshake itself is refused.
    const bare = new bridgeV1.Bridge(address, grpc.credentials.createSsl(fs.readFileSync(ca)));
    const refused = await expectError(call(bare, 'Call', { envelope: envelope('echo') }, null, 5000));
    assert.strictEqual(refused.code, grpc.status.UNAVAILABLE);
    bare.close();
    console.log('ok no-certificate-refused');
  } else {
    // 4. No credentials, or a token the server does not know: UNAUTHENTICATED.
    const none = await expectError(call(client, 'Call', { envelope: envelope('echo') }));
    expectRefusal(none, grpc.status.UNAUTHENTICATED, 'REASON_UNAUTHENTICATED');
    const wrong = new grpc.Metadata();
    wrong.set('authorization', `Bearer ${bearer}x`);
    const bad = await expectError(call(client, 'Call', { envelope: envelope('echo') }, wrong));
    expectRefusal(bad, grpc.status.UNAUTHENTICATED, 'REASON_UNAUTHENTICATED');
    assert.ok(!bad.details.includes(bearer), 'the refusal quotes the token');
    console.log('ok unauthenticated');
  }
  client.close();
}

run(main);
