// A Node.js gRPC client calling a legacy oslo.messaging service through the bridge's gateway.
//
//   node gateway.js HOST:PORT EXCHANGE TOPIC
//
// The service behind TOPIC is a real oslo.messaging RPC server on RabbitMQ with the
// endpoints of tests/amqp_support.py. Prints one "ok <check>" line per check, exits 0,
// or prints the failure and exits 1. Every wait is bounded.
'use strict';

const assert = require('assert');
const {
  grpc, bridgeV1, failureOf, V, plain, deadline, unary, expectError, run,
} = require('./bridge');

async function main() {
  const [address, exchange, topic] = process.argv.slice(2);
  const client = new bridgeV1.Bridge(address, grpc.credentials.createInsecure());
  const envelope = (method, args = {}, extra = {}) => ({
    target: { topic, exchange }, method, args, version: '1.5',
    context: { request_id: V.str('req-node-1'), user: V.str('node') }, ...extra,
  });

  // The legacy server's result comes back exactly.
  const value = V.map({ n: V.int(7), x: V.dbl(1.5), items: V.list(V.str('a'), V.map({ deep: V.int(-1) })) });
  const reply = await unary(client, 'Call', { envelope: envelope('echo', { value }) });
  assert.deepStrictEqual(plain(reply.result), value);
  console.log('ok gateway-call');

  // The context arrives as an oslo.messaging client would have sent it.
  const ctxt = await unary(client, 'Call', { envelope: envelope('context') });
  const fields = ctxt.result.map_value.fields;
  assert.strictEqual(fields.request_id.string_value, 'req-node-1');
  assert.strictEqual(fields.user.string_value, 'node');
  console.log('ok gateway-context');

  // A failure in the legacy server is a typed, structured error.
  const failed = await expectError(unary(client, 'Call', { envelope: envelope('fail') }));
  assert.strictEqual(failed.code, grpc.status.UNKNOWN);
  let failure = failureOf(failed);
  assert.strictEqual(failure.class_name, 'ValueError');
  assert.strictEqual(failure.module, 'builtins');
  assert.strictEqual(failure.message, 'bad value');
  console.log('ok gateway-typed-error');

  // oslo.messaging's own dispatcher errors map like local ones.
  const missing = await expectError(unary(client, 'Call', { envelope: envelope('no_such_method') }));
  assert.strictEqual(missing.code, grpc.status.UNIMPLEMENTED);
  failure = failureOf(missing);
  assert.strictEqual(failure.class_name, 'NoSuchMethod');
  assert.strictEqual(failure.module, 'oslo_messaging.rpc.dispatcher');
  console.log('ok gateway-unimplemented');

  // A legacy method slower than the deadline is DEADLINE_EXCEEDED.
  const late = await expectError(unary(client, 'Call', { envelope: envelope('sleep', { seconds: V.dbl(3) }) }, 1000));
  assert.strictEqual(late.code, grpc.status.DEADLINE_EXCEEDED);
  console.log('ok gateway-deadline');

  // A topic with no route is NOT_FOUND.
  const nowhere = await expectError(unary(client, 'Call', { envelope: { ...envelope('echo'), target: { topic: 'no-such-topic' } } }));
  assert.strictEqual(nowhere.code, grpc.status.NOT_FOUND);
  console.log('ok gateway-not-found');
  client.close();
}

run(main);
