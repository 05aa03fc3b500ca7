// A Node.js client of rpc-bridge that knows nothing but proto/ and @grpc/grpc-js.
//
//   node client.js HOST:PORT
//
// Runs five checks against a server serving rpc-bridge's default endpoints on
// topic "topic"; prints one "ok <check>" line per check and exits 0, or prints
// the failure and exits 1. Every wait is bounded.
'use strict';

const path = require('path');
const assert = require('assert');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'bridge/v1/bridge.proto';

const definition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String,
  defaults: false, oneofs: true,
});
const bridgeV1 = grpc.loadPackageDefinition(definition).bridge.v1;

// google.rpc.Status (with google.protobuf.Any's two fields), to read the
// grpc-status-details-bin trailer.
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
  assert.ok(raw && raw.length, 'no grpc-status-details-bin in the error');
  const status = Status.decode(raw[0]);
  assert.strictEqual(status.code, err.code);
  const detail = status.details.find((d) => d.type_url.endsWith('/bridge.v1.Failure'));
  assert.ok(detail, 'no bridge.v1.Failure detail');
  return Failure.toObject(Failure.decode(detail.value), { enums: String, longs: String });
}

// Build Values by hand, the way any client builds them.
const V = {
  nul: () => ({ null_value: 'NULL_VALUE' }),
  int: (n) => ({ integer_value: String(n) }),
  dbl: (x) => ({ double_value: x }),
  str: (s) => ({ string_value: s }),
  bool: (b) => ({ bool_value: b }),
  big: (s) => ({ big_integer_value: s }),
  list: (...items) => ({ list_value: { values: items } }),
  map: (fields) => ({ map_value: { fields } }),
};

// A Value as read back, without the virtual oneof name, for deep comparison.
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

function envelope(method, args = {}, extra = {}) {
  return { target: { topic: 'topic' }, method, args, context: { user: V.str('node') }, ...extra };
}

function deadline(ms) { return new Date(Date.now() + ms); }

function unary(client, method, request, ms = 10000) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline(ms) }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function expectError(promise) {
  try { await promise; } catch (err) { return err; }
  throw new Error('expected an error status');
}

async function main() {
  const address = process.argv[2];
  const client = new bridgeV1.Bridge(address, grpc.credentials.createInsecure());

  // 1. A Call with nested args returns the exact value.
  const value = V.map({
    int: V.int(1), dbl: V.dbl(1.0), min: V.int('-9223372036854775808'),
    max: V.int('9223372036854775807'), big: V.big('123456789012345678901234567890'),
    nested: V.list(V.list(V.map({ 'ü☃': V.str('𝄞') })), V.nul(), V.bool(true), V.list()),
  });
  const reply = await unary(client, 'Call', { envelope: envelope('echo', { value }) });
  assert.deepStrictEqual(plain(reply.result), value);
  console.log('ok call-exact-value');

  // 2. A Cast is accepted (and runs: the counter it bumps is seen by a later Call).
  const counter = (method, args) => unary(client, 'Call', { envelope: envelope(method, { name: V.str('node'), ...args }, { namespace: 'counter' }) });
  const before = Number((await counter('get', {})).result.integer_value || 0);
  const cast = await unary(client, 'Cast', { envelope: envelope('increment', { name: V.str('node'), by: V.int(3) }, { namespace: 'counter' }) });
  assert.deepStrictEqual(cast, {});
  let seen = before;
  for (let i = 0; i < 200 && seen !== before + 3; i += 1) {
    seen = Number((await counter('get', {})).result.integer_value);
    if (seen !== before + 3) await new Promise((r) => setTimeout(r, 25));
  }
  assert.strictEqual(seen, before + 3);
  console.log('ok cast-accepted');

  // 3. An unknown method is UNIMPLEMENTED, with the structured failure.
  const unknown = await expectError(unary(client, 'Call', { envelope: envelope('no_such_method') }));
  assert.strictEqual(unknown.code, grpc.status.UNIMPLEMENTED);
  const failure = failureOf(unknown);
  assert.strictEqual(failure.reason, 'REASON_NO_SUCH_METHOD');
  assert.strictEqual(failure.class_name, 'NoSuchMethod');
  assert.strictEqual(failure.module, 'oslo_messaging.rpc.dispatcher');
  assert.match(failure.message, /no_such_method/);
  console.log('ok unimplemented-detail');

  // 4. A short deadline gives DEADLINE_EXCEEDED.
  const late = await expectError(unary(client, 'Call', { envelope: envelope('sleep', { seconds: V.dbl(3) }) }, 200));
  assert.strictEqual(late.code, grpc.status.DEADLINE_EXCEEDED);
  console.log('ok deadline-exceeded');

  // 5. CallStream answers 1,000 pipelined calls.
  const total = 1000;
  const answered = await new Promise((resolve, reject) => {
    const got = new Map();
    const stream = client.CallStream({ deadline: deadline(60000) });
    stream.on('data', (response) => {
      if (response.outcome !== 'result') { reject(new Error(`call ${response.id} failed: ${JSON.stringify(response.error)}`)); return; }
      got.set(response.id, response.result.integer_value);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(got));
    for (let id = 1; id <= total; id += 1) {
      stream.write({ id: String(id), envelope: envelope('echo', { value: V.int(id) }) });
    }
    stream.end();
  });
  assert.strictEqual(answered.size, total);
  for (const [id, result] of answered) assert.strictEqual(result, id);
  console.log('ok call-stream-1000');

  client.close();
}

main().then(() => process.exit(0), (err) => {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
