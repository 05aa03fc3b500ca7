// What every Node client of rpc-bridge needs, from nothing but proto/ and @grpc/grpc-js:
// the service stub, Values built by hand, and the bridge.v1.Failure of an error status.
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

// google.rpc.Status (proto/google/rpc/status.proto), to read the grpc-status-details-bin
// trailer; google/protobuf/any.proto is protobufjs's own.
const types = new protobuf.Root().loadSync(
  [path.join(PROTO_ROOT, PROTO_FILE), path.join(PROTO_ROOT, 'google/rpc/status.proto')],
  { keepCase: true });
types.resolveAll();
const Status = types.lookupType('google.rpc.Status');
const Failure = types.lookupType('bridge.v1.Failure');

// The bridge.v1.Failure in an error's grpc-status-details-bin trailer.
function failureOf(err) {
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin');
  assert.ok(raw && raw.length, `no grpc-status-details-bin in: ${err.message}`);
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

function deadline(ms) { return new Date(Date.now() + ms); }

// A unary Call or Cast as a promise, bounded by a deadline.
function unary(client, method, request, ms = 10000) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline(ms) }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function expectError(promise) {
  try { await promise; } catch (err) { return err; }
  throw new Error('expected an error status');
}

// Run main(); exit 0, or print the failure and exit 1.
function run(main) {
  main().then(() => process.exit(0), (err) => {
    console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  });
}

module.exports = {
  grpc, bridgeV1, failureOf, V, plain, deadline, unary, expectError, run,
};
