// A Node.js gRPC client calling a legacy oslo.messaging service through the bridge's gateway.
//
//   node gateway.js HOST:PORT EXCHANGE TOPIC
//
// The service behind TOPIC is a real oslo.messaging RPC server on RabbitMQ with the
// endpoints of tests/amqp_support.py. Prints one "ok <check>" line per check, exits 0,
// or prints the failure and exits 1. Every wait is bounded.
'use strict';

const path = require('path');
const assert = require('assert');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'bridge/v1/bridge.proto';
const definition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
});
const bridgeV1 = grpc.loadPackageDefinition(definition).bridge.v1;

const types = new protobuf.Root().loadSync(path.join(PROTO_ROOT, PROTO_FILE), { keepCase: true });
types.add(protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
`, { keepCase: true }).root.lookup('google'));
types.resolveAll();
const Status = types.lookupType('google.rpc.Status');
const Failure = types.lookupType('bridge.v1.Failure');

function failureOf(err) {
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin');
  assert.ok(raw && raw.length, `no grpc-status-details-bin in: ${err.message}`);
  const detail = Status.decode(raw[0]).details.find((d) => d.type_url.endsWith('/bridge.v1.Failure'));
  assert.ok(detail, 'no bridge.v1.Failure detail');
  return Failure.toObject(Failure.decode(detail.value), { enums: String, longs: String });
}

const V = {
  int: (n) => ({ integer_value: String(n) }),
  str: (s) => ({ string_value: s }),
  dbl: (x) => ({ double_value: x }),
  list: (...items) => ({ list_value: { values: items } }),
  map: (fields) => ({ map_value: { fields } }),
};

function plain(value) {
  const kind = value.kind;
  if (kind === 'list_value') return { list_value: { values: (value.list_value.values || []).map(plain) } };
  if (kind === 'map_value') {
    const fields = {};
    for (const [k, v] of Object.entries(value.map_value.fields || {})) fields[k] = plain(v);
    return { map_value: { fields } };
  }
  return { [kind]: value[kind] };
}

function unary(client, method, request, ms = 10000) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: new Date(Date.now() + ms) },
      (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function expectError(promise) {
  try { await promise; } catch (err) { return err; }
  throw new Error('expected an error status');
}

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

main().then(() => process.exit(0), (err) => {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
