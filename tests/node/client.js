// A Node.js client of rpc-bridge that knows nothing but proto/ and @grpc/grpc-js.
//
//   node client.js HOST:PORT
//
// Runs five checks against a server serving rpc-bridge's default endpoints on
// topic "topic"; prints one "ok <check>" line per check and exits 0, or prints
// the failure and exits 1. Every wait is bounded.
'use strict';

const assert = require('assert');
const {
  grpc, bridgeV1, failureOf, V, plain, deadline, unary, expectError, run,
} = require('./bridge');

function envelope(method, args = {}, extra = {}) {
  return { target: { topic: 'topic' }, method, args, context: { user: V.str('node') }, ...extra };
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

run(main);
