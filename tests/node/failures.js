// Failures of any size reach a Node.js client whole: its status, class, module and a
// readable (truncated) message, and the channel serves the next call.
//
//   node failures.js HOST:PORT
//
// Prints one "ok failure-<size>" line per size and exits 0, or prints the failure and
// exits 1. Every wait is bounded.
'use strict';

const assert = require('assert');
const {
  grpc, bridgeV1, failureOf, V, plain, unary, expectError, run,
} = require('./bridge');

function envelope(method, args = {}) {
  return { target: { topic: 'topic' }, method, args, context: {} };
}

async function main() {
  const address = process.argv[2];
  const client = new bridgeV1.Bridge(address, grpc.credentials.createInsecure());
  for (const size of [100, 6000, 30000, 300000, 2000000]) {
    const text = 'ü'.repeat(size);
    const err = await expectError(unary(client, 'Call', { envelope: envelope('fail', { message: V.str(text) }) }));
    assert.strictEqual(err.code, grpc.status.UNKNOWN, `size ${size}: ${err.code} ${err.details}`);
    const failure = failureOf(err);
    assert.strictEqual(failure.reason, 'REASON_ENDPOINT_ERROR');
    assert.strictEqual(failure.class_name, 'ValueError');
    assert.strictEqual(failure.module, 'builtins');
    assert.ok(failure.message.startsWith('ü'.repeat(50)), 'the message keeps its start');
    if (size > 1000) assert.match(failure.message, /truncated/);
    else assert.strictEqual(failure.message, text);
    assert.match(err.details, /^ValueError: ü/);
    // The same channel serves the next call.
    const reply = await unary(client, 'Call', { envelope: envelope('echo', { value: V.int(size) }) });
    assert.deepStrictEqual(plain(reply.result), V.int(size));
    console.log(`ok failure-${size}`);
  }
  client.close();
}

run(main);
