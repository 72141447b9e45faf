// The gRPC interop client (grpc's doc/interop-test-descriptions.md) on @grpc/grpc-js.
//
// Usage: node grpc_client.js --server_host 127.0.0.1 --server_port PORT --test_case CASES
// CASES is one case name, a comma-separated list or "all". Prints one JSON line per case,
// {"case": name, "ok": bool, "error"?: message}, and exits 0 only if every case passed.
import grpc from "@grpc/grpc-js";
import {
  ECHO_INITIAL,
  ECHO_TRAILING,
  SPECIAL_MESSAGE,
  check,
  loadTesting,
  parseArgs,
} from "./_common.js";

const testing = loadTesting();
const Status = grpc.status;
const CASE_TIMEOUT_MS = 10_000;

const payload = (size) => ({ body: Buffer.alloc(size) });
const deadline = (ms) => ({ deadline: new Date(Date.now() + ms) });
const withDeadline = () => deadline(5_000);

function echoMetadata() {
  const md = new grpc.Metadata();
  md.set(ECHO_INITIAL, "test_initial_metadata_value");
  md.set(ECHO_TRAILING, Buffer.from([0xab, 0xab, 0xab]));
  return md;
}

// A unary call as a promise of {response, error, headers, status}.
function unary(client, method, req, md = new grpc.Metadata(), opts = withDeadline()) {
  return new Promise((resolve) => {
    const out = { headers: null };
    const call = client[method](req, md, opts, (error, response) => {
      out.error = error;
      out.response = response;
    });
    call.on("metadata", (headers) => (out.headers = headers));
    call.on("status", (status) => resolve({ ...out, status }));
  });
}

// Reads a response stream: next() gives the next message or null at the end; `status`
// resolves with the call's final status.
function reader(call) {
  const queue = [];
  const waiting = [];
  let ended = false;
  const out = { headers: null };
  call.on("metadata", (headers) => (out.headers = headers));
  call.on("data", (msg) => (waiting.length ? waiting.shift()(msg) : queue.push(msg)));
  call.on("error", () => {});
  out.status = new Promise((resolve) =>
    call.on("status", (status) => {
      ended = true;
      while (waiting.length) waiting.shift()(null);
      resolve(status);
    }),
  );
  out.next = () =>
    queue.length || ended
      ? Promise.resolve(queue.length ? queue.shift() : null)
      : new Promise((resolve) => waiting.push(resolve));
  out.all = async () => {
    const msgs = [];
    for (let m = await out.next(); m !== null; m = await out.next()) msgs.push(m);
    return msgs;
  };
  return out;
}

function expectStatus(status, code, message) {
  check(
    status.code === code,
    `expected status ${code}, got ${status.code} (${JSON.stringify(status.details)})`,
  );
  if (message !== undefined) {
    check(
      status.details === message,
      `expected message ${JSON.stringify(message)}, got ${JSON.stringify(status.details)}`,
    );
  }
}

function expectSizes(msgs, sizes) {
  const got = msgs.map((m) => m.payload.body.length);
  check(JSON.stringify(got) === JSON.stringify(sizes), `expected sizes ${sizes}, got ${got}`);
}

function expectEchoed(headers, status) {
  const initial = headers ? headers.get(ECHO_INITIAL) : [];
  check(
    initial.length === 1 && initial[0] === "test_initial_metadata_value",
    `initial metadata not echoed: ${JSON.stringify(initial)}`,
  );
  const trailing = status.metadata.get(ECHO_TRAILING);
  check(
    trailing.length === 1 && Buffer.from([0xab, 0xab, 0xab]).equals(trailing[0]),
    `trailing metadata not echoed: ${JSON.stringify(trailing)}`,
  );
}

const outReq = (size, payloadSize = 0, extra = {}) => ({
  response_parameters: [{ size }],
  payload: payload(payloadSize),
  ...extra,
});

const CASES = {
  async empty_unary(client) {
    const r = await unary(client, "EmptyCall", {});
    expectStatus(r.status, Status.OK);
    check(r.response && Object.keys(r.response).length === 0, "response is not empty");
  },

  async large_unary(client) {
    const r = await unary(client, "UnaryCall", {
      response_type: "COMPRESSABLE",
      response_size: 314159,
      payload: payload(271828),
    });
    expectStatus(r.status, Status.OK);
    check(Buffer.alloc(314159).equals(r.response.payload.body), "wrong response payload");
  },

  async client_streaming(client) {
    const done = new Promise((resolve) => {
      const call = client.StreamingInputCall(withDeadline(), (error, response) =>
        resolve({ error, response }),
      );
      for (const size of [27182, 8, 1828, 45904]) call.write({ payload: payload(size) });
      call.end();
    });
    const { error, response } = await done;
    check(!error, `call failed: ${error && error.message}`);
    check(
      response.aggregated_payload_size === 74922,
      `aggregated_payload_size ${response.aggregated_payload_size}`,
    );
  },

  async server_streaming(client) {
    const sizes = [31415, 9, 2653, 58979];
    const call = client.StreamingOutputCall(
      { response_parameters: sizes.map((size) => ({ size })) },
      withDeadline(),
    );
    const r = reader(call);
    expectSizes(await r.all(), sizes);
    expectStatus(await r.status, Status.OK);
  },

  async ping_pong(client) {
    const call = client.FullDuplexCall(withDeadline());
    const r = reader(call);
    const pairs = [
      [31415, 27182],
      [9, 8],
      [2653, 1828],
      [58979, 45904],
    ];
    for (const [size, payloadSize] of pairs) {
      call.write(outReq(size, payloadSize));
      const msg = await r.next();
      check(msg !== null, "stream ended early");
      check(msg.payload.body.length === size, `response size ${msg.payload.body.length}`);
    }
    call.end();
    check((await r.next()) === null, "unexpected extra response");
    expectStatus(await r.status, Status.OK);
  },

  async empty_stream(client) {
    const call = client.FullDuplexCall(withDeadline());
    const r = reader(call);
    call.end();
    check((await r.all()).length === 0, "responses on an empty stream");
    expectStatus(await r.status, Status.OK);
  },

  async custom_metadata(client) {
    const u = await unary(
      client,
      "UnaryCall",
      { response_size: 314159, payload: payload(271828) },
      echoMetadata(),
    );
    expectStatus(u.status, Status.OK);
    expectEchoed(u.headers, u.status);

    const call = client.FullDuplexCall(echoMetadata(), withDeadline());
    const r = reader(call);
    call.write(outReq(314159, 271828));
    call.end();
    expectSizes(await r.all(), [314159]);
    const status = await r.status;
    expectStatus(status, Status.OK);
    expectEchoed(r.headers, status);
  },

  async status_code_and_message(client) {
    const response_status = { code: 2, message: "test status message" };
    const u = await unary(client, "UnaryCall", { response_status });
    expectStatus(u.status, Status.UNKNOWN, "test status message");

    const call = client.FullDuplexCall(withDeadline());
    const r = reader(call);
    call.write({ response_status });
    call.end();
    await r.all();
    expectStatus(await r.status, Status.UNKNOWN, "test status message");
  },

  async special_status_message(client) {
    const u = await unary(client, "UnaryCall", {
      response_status: { code: 2, message: SPECIAL_MESSAGE },
    });
    expectStatus(u.status, Status.UNKNOWN, SPECIAL_MESSAGE);
  },

  async unimplemented_method(client) {
    const u = await unary(client, "UnimplementedCall", {});
    expectStatus(u.status, Status.UNIMPLEMENTED);
  },

  async unimplemented_service(client, address) {
    const other = new testing.UnimplementedService(address, grpc.credentials.createInsecure());
    try {
      const u = await unary(other, "UnimplementedCall", {});
      expectStatus(u.status, Status.UNIMPLEMENTED);
    } finally {
      other.close();
    }
  },

  async cancel_after_begin(client) {
    const done = new Promise((resolve) => {
      const call = client.StreamingInputCall(withDeadline(), (error) => resolve(error));
      call.cancel();
    });
    const error = await done;
    check(error, "the cancelled call succeeded");
    expectStatus(error, Status.CANCELLED);
  },

  async cancel_after_first_response(client) {
    const call = client.FullDuplexCall(withDeadline());
    const r = reader(call);
    call.write(outReq(31415, 27182));
    const msg = await r.next();
    check(msg !== null && msg.payload.body.length === 31415, "no first response");
    call.cancel();
    expectStatus(await r.status, Status.CANCELLED);
  },

  async timeout_on_sleeping_server(client) {
    const call = client.FullDuplexCall(deadline(1));
    const r = reader(call);
    call.on("error", () => {});
    call.write({ payload: payload(27182) });
    await r.all();
    expectStatus(await r.status, Status.DEADLINE_EXCEEDED);
  },
};

function withTimeout(promise, ms) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main() {
  const args = parseArgs();
  const host = args.server_host ?? "127.0.0.1";
  const port = args.server_port;
  if (!port) throw new Error("--server_port is required");
  const wanted = String(args.test_case ?? "all");
  const names = wanted === "all" ? Object.keys(CASES) : wanted.split(",");
  for (const name of names) {
    if (!(name in CASES)) throw new Error(`unknown test case ${name}`);
  }
  const address = `${host}:${port}`;
  const client = new testing.TestService(address, grpc.credentials.createInsecure());
  let failed = 0;
  for (const name of names) {
    try {
      await withTimeout(CASES[name](client, address), CASE_TIMEOUT_MS);
      console.log(JSON.stringify({ case: name, ok: true }));
    } catch (err) {
      failed++;
      console.log(JSON.stringify({ case: name, ok: false, error: String(err.message ?? err) }));
    }
  }
  client.close();
  return failed;
}

main().then(
  (failed) => process.exit(failed ? 1 : 0),
  (err) => {
    console.error(err.message ?? err);
    process.exit(2);
  },
);
