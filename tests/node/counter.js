// Calls rpc-bridge's counter endpoint over gRPC, knowing nothing but proto/ and @grpc/grpc-js.
//
//   node counter.js HOST:PORT TOPIC NAME increment BY
//   node counter.js HOST:PORT TOPIC NAME get
//
// Prints the counter's value after the call (one integer) and exits 0, or prints the
// error and exits 1. Used by tests/app/test_end_to_end.py; the deadline bounds every call.
'use strict';

const { grpc, bridgeV1 } = require('./bridge');

function main() {
  const [address, topic, name, method, by] = process.argv.slice(2);
  if (!address || !topic || !name || !['increment', 'get'].includes(method)) {
    console.error('usage: node counter.js HOST:PORT TOPIC NAME increment BY | get');
    process.exit(2);
  }
  const args = { name: { string_value: name } };
  if (method === 'increment') args.by = { integer_value: String(Number(by || 1)) };
  const client = new bridgeV1.Bridge(address, grpc.credentials.createInsecure());
  const request = {
    envelope: {
      target: { topic }, namespace: 'counter', version: '1.0', method, args,
      context: { request_id: { string_value: 'req-node' } },
    },
  };
  client.Call(request, { deadline: new Date(Date.now() + 20000) }, (err, reply) => {
    client.close();
    if (err) {
      console.error(`error ${err.code} ${err.details}`);
      process.exit(1);
    }
    console.log(reply.result.integer_value);
  });
}

main();
