// A @connectrpc/connect-node client of grpc.testing.TestService over the Connect, gRPC
// and gRPC-Web transports (HTTP/2 and HTTP/1.1), with message types from a descriptor set.
//
// Usage: node connect_client.js --url http://127.0.0.1:PORT [--schema set.binpb]
//                               [--transports a,b] [--cases a,b]
// --schema is a FileDescriptorSet holding grpc/testing/test.proto and its imports; without
// it the script builds one with `buf build` from Debian's grpc-proto files.
// Prints one JSON line per transport and case, {"transport", "case", "ok", "error"?}, and
// exits 0 only if every one passed.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  decodeBinaryHeader,
  encodeBinaryHeader,
} from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import {
  ECHO_INITIAL,
  ECHO_TRAILING,
  PROTO_ROOT,
  SPECIAL_MESSAGE,
  TEST_PROTO,
  check,
  parseArgs,
} from "./_common.js";

const BUF = fileURLToPath(new URL("./node_modules/.bin/buf", import.meta.url));
const CASE_TIMEOUT_MS = 10_000;
const TRAILING_VALUE = new Uint8Array([0xab, 0xab, 0xab]);

function loadSchema(path) {
  const bytes = path
    ? readFileSync(path)
    : execFileSync(BUF, ["build", PROTO_ROOT, "--path", `${PROTO_ROOT}/${TEST_PROTO}`, "-o", "-"], {
        maxBuffer: 16 << 20,
      });
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
}

// name -> transport factory: protocol, HTTP version ("h1" = HTTP/1.1), then the variant
// ("json" = JSON messages instead of binary protobuf, "gzip" = compressed requests).
const TRANSPORTS = {
  "connect-h2": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
  "connect-h2-json": (baseUrl) =>
    createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }),
  "connect-h2-gzip": (baseUrl) =>
    createConnectTransport({
      baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      sendCompression: compressionGzip,
      compressMinBytes: 0,
    }),
  "connect-h1": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  "connect-h1-json": (baseUrl) =>
    createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  "grpc-h2": (baseUrl) => createGrpcTransport({ baseUrl, useBinaryFormat: true }),
  "grpc-h2-json": (baseUrl) => createGrpcTransport({ baseUrl, useBinaryFormat: false }),
  "grpc-h2-gzip": (baseUrl) =>
    createGrpcTransport({ baseUrl, sendCompression: compressionGzip, compressMinBytes: 0 }),
  "grpcweb-h2": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
  "grpcweb-h1": (baseUrl) =>
    createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  "grpcweb-h1-gzip": (baseUrl) =>
    createGrpcWebTransport({
      baseUrl,
      httpVersion: "1.1",
      useBinaryFormat: true,
      sendCompression: compressionGzip,
      compressMinBytes: 0,
    }),
  "grpcweb-h1-json": (baseUrl) =>
    createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
};

// Cases that need a full-duplex stream run on HTTP/2 transports only.
const NEEDS_HTTP2 = new Set(["ping_pong", "empty_stream"]);

function expectError(err, code, message) {
  check(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
  check(err.code === code, `expected code ${Code[code]}, got ${Code[err.code]}: ${err.rawMessage}`);
  if (message !== undefined) {
    check(
      err.rawMessage === message,
      `expected message ${JSON.stringify(message)}, got ${JSON.stringify(err.rawMessage)}`,
    );
  }
}

async function rejects(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("the call succeeded");
}

// An async iterable fed by put(); put(null) ends it.
function feed() {
  const queue = [];
  const waiting = [];
  return {
    put(item) {
      waiting.length ? waiting.shift()(item) : queue.push(item);
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const item = queue.length
          ? queue.shift()
          : await new Promise((resolve) => waiting.push(resolve));
        if (item === null) return;
        yield item;
      }
    },
  };
}

function makeCases(types) {
  const payload = (size) => ({ body: new Uint8Array(size) });
  const simple = (init) => create(types.SimpleRequest, init);
  const outReq = (init) => create(types.StreamingOutputCallRequest, init);
  const sizes = (msgs) => msgs.map((m) => m.payload.body.length);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const echoHeaders = () => ({
    [ECHO_INITIAL]: "test_initial_metadata_value",
    [ECHO_TRAILING]: encodeBinaryHeader(TRAILING_VALUE),
  });
  const expectEchoed = (headers, trailers) => {
    check(
      headers && headers.get(ECHO_INITIAL) === "test_initial_metadata_value",
      `initial metadata not echoed: ${headers && headers.get(ECHO_INITIAL)}`,
    );
    const trailing = trailers && trailers.get(ECHO_TRAILING);
    check(
      trailing && same([...decodeBinaryHeader(trailing)], [...TRAILING_VALUE]),
      `trailing metadata not echoed: ${trailing}`,
    );
  };
  const collect = async (stream) => {
    const out = [];
    for await (const msg of stream) out.push(msg);
    return out;
  };

  return {
    async empty_unary(client) {
      const res = await client.emptyCall(create(types.Empty, {}));
      check(res.$typeName === "grpc.testing.Empty", `unexpected response ${res.$typeName}`);
    },

    async large_unary(client) {
      const res = await client.unaryCall(simple({ responseSize: 314159, payload: payload(271828) }));
      check(res.payload.body.length === 314159, `response size ${res.payload.body.length}`);
      check(res.payload.body.every((b) => b === 0), "response payload is not zeros");
    },

    async client_streaming(client) {
      async function* inputs() {
        for (const n of [27182, 8, 1828, 45904]) {
          yield create(types.StreamingInputCallRequest, { payload: payload(n) });
        }
      }
      const res = await client.streamingInputCall(inputs());
      check(res.aggregatedPayloadSize === 74922, `aggregated size ${res.aggregatedPayloadSize}`);
    },

    async server_streaming(client) {
      const want = [31415, 9, 2653, 58979];
      const req = outReq({ responseParameters: want.map((size) => ({ size })) });
      const got = sizes(await collect(client.streamingOutputCall(req)));
      check(same(got, want), `sizes ${got}`);
    },

    async ping_pong(client) {
      const requests = feed();
      const responses = client.fullDuplexCall(requests)[Symbol.asyncIterator]();
      for (const [size, body] of [
        [31415, 27182],
        [9, 8],
        [2653, 1828],
        [58979, 45904],
      ]) {
        requests.put(outReq({ responseParameters: [{ size }], payload: payload(body) }));
        const next = await responses.next();
        check(!next.done, "stream ended early");
        check(next.value.payload.body.length === size, `size ${next.value.payload.body.length}`);
      }
      requests.put(null);
      check((await responses.next()).done, "unexpected extra response");
    },

    async empty_stream(client) {
      async function* nothing() {}
      check((await collect(client.fullDuplexCall(nothing()))).length === 0, "got responses");
    },

    async custom_metadata(client) {
      let headers, trailers;
      const opts = {
        headers: echoHeaders(),
        onHeader: (h) => (headers = h),
        onTrailer: (t) => (trailers = t),
      };
      const res = await client.unaryCall(
        simple({ responseSize: 314159, payload: payload(271828) }),
        opts,
      );
      check(res.payload.body.length === 314159, "wrong response size");
      expectEchoed(headers, trailers);

      headers = trailers = undefined;
      const req = outReq({ responseParameters: [{ size: 31415 }] });
      const got = sizes(await collect(client.streamingOutputCall(req, opts)));
      check(same(got, [31415]), `sizes ${got}`);
      expectEchoed(headers, trailers);
    },

    async status_code_and_message(client) {
      const responseStatus = { code: 2, message: "test status message" };
      expectError(
        await rejects(client.unaryCall(simple({ responseStatus }))),
        Code.Unknown,
        "test status message",
      );
      // On a server stream the status comes after the messages.
      const req = outReq({ responseParameters: [{ size: 8 }], responseStatus });
      const got = [];
      const err = await rejects(
        (async () => {
          for await (const msg of client.streamingOutputCall(req)) got.push(msg);
        })(),
      );
      expectError(err, Code.Unknown, "test status message");
      check(same(sizes(got), [8]), `sizes before the error ${sizes(got)}`);
    },

    async special_status_message(client) {
      const responseStatus = { code: 2, message: SPECIAL_MESSAGE };
      expectError(
        await rejects(client.unaryCall(simple({ responseStatus }))),
        Code.Unknown,
        SPECIAL_MESSAGE,
      );
    },

    async unimplemented_method(client) {
      expectError(
        await rejects(client.unimplementedCall(create(types.Empty, {}))),
        Code.Unimplemented,
      );
    },

    async cancel_after_first_response(client) {
      const controller = new AbortController();
      const req = outReq({
        responseParameters: [{ size: 31415 }, { size: 9, intervalUs: 2_000_000 }],
      });
      const stream = client.streamingOutputCall(req, { signal: controller.signal });
      const err = await rejects(
        (async () => {
          for await (const msg of stream) {
            check(msg.payload.body.length === 31415, "wrong first response");
            controller.abort();
          }
        })(),
      );
      expectError(err, Code.Canceled);
    },

    async timeout_on_sleeping_server(client) {
      const req = outReq({ responseParameters: [{ size: 1, intervalUs: 2_000_000 }] });
      const started = Date.now();
      expectError(
        await rejects(collect(client.streamingOutputCall(req, { timeoutMs: 100 }))),
        Code.DeadlineExceeded,
      );
      check(Date.now() - started < 1500, "the deadline was not kept");
    },
  };
}

function withTimeout(promise, ms) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main() {
  const args = parseArgs();
  if (!args.url) throw new Error("--url is required");
  const registry = loadSchema(args.schema);
  const service = registry.getService("grpc.testing.TestService");
  check(service, "grpc.testing.TestService is not in the schema");
  const types = {};
  for (const name of [
    "Empty",
    "SimpleRequest",
    "StreamingInputCallRequest",
    "StreamingOutputCallRequest",
  ]) {
    types[name] = registry.getMessage(`grpc.testing.${name}`);
  }
  const cases = makeCases(types);
  const pick = (arg, all) => (arg ? String(arg).split(",") : Object.keys(all));
  const transportNames = pick(args.transports, TRANSPORTS);
  const caseNames = pick(args.cases, cases);
  let failed = 0;
  for (const transport of transportNames) {
    check(transport in TRANSPORTS, `unknown transport ${transport}`);
    const client = createClient(service, TRANSPORTS[transport](args.url));
    for (const name of caseNames) {
      check(name in cases, `unknown case ${name}`);
      if (NEEDS_HTTP2.has(name) && transport.includes("-h1")) continue;
      const line = { transport, case: name, ok: true };
      try {
        await withTimeout(cases[name](client), CASE_TIMEOUT_MS);
      } catch (err) {
        failed++;
        line.ok = false;
        line.error = String(err.message ?? err);
      }
      console.log(JSON.stringify(line));
    }
  }
  return failed;
}

main().then(
  (failed) => process.exit(failed ? 1 : 0),
  (err) => {
    console.error(err.stack ?? err);
    process.exit(2);
  },
);
