// grpc.testing.TestService on @grpc/grpc-js, for the h2mesh client's interop cases.
//
// Usage: node grpc_server.js [--port 0]
// Prints {"port": N} on stdout once listening on 127.0.0.1; runs until stdin closes or
// SIGTERM.
import grpc from "@grpc/grpc-js";
import { ECHO_INITIAL, ECHO_TRAILING, loadTesting, parseArgs } from "./_common.js";

const testing = loadTesting();

function payload(size) {
  return { type: "COMPRESSABLE", body: Buffer.alloc(size) };
}

// Echoes the test metadata: the initial value at once, the trailing one as a trailer.
function echoMetadata(call) {
  const initial = call.metadata.get(ECHO_INITIAL);
  if (initial.length > 0) {
    const md = new grpc.Metadata();
    md.set(ECHO_INITIAL, initial[0]);
    call.sendMetadata(md);
  }
  const trailers = new grpc.Metadata();
  const trailing = call.metadata.get(ECHO_TRAILING);
  if (trailing.length > 0) trailers.set(ECHO_TRAILING, trailing[0]);
  return trailers;
}

// The status asked for by `response_status`, or null.
function askedStatus(req, trailers) {
  const status = req.response_status;
  if (status && status.code) return { code: status.code, details: status.message, metadata: trailers };
  return null;
}

const sleep = (us) => new Promise((resolve) => setTimeout(resolve, us / 1000));

// Writes the responses `req.response_parameters` asks for, waiting `interval_us` before each.
async function writeResponses(call, req) {
  for (const params of req.response_parameters) {
    if (params.interval_us) await sleep(params.interval_us);
    if (call.cancelled) return;
    call.write({ payload: payload(params.size) });
  }
}

const handlers = {
  EmptyCall(call, callback) {
    callback(null, {});
  },
  UnaryCall(call, callback) {
    const trailers = echoMetadata(call);
    const status = askedStatus(call.request, trailers);
    if (status) return callback(status);
    callback(null, { payload: payload(call.request.response_size) }, trailers);
  },
  StreamingInputCall(call, callback) {
    let total = 0;
    call.on("data", (req) => {
      total += req.payload ? req.payload.body.length : 0;
    });
    call.on("end", () => callback(null, { aggregated_payload_size: total }));
    call.on("error", () => {});
  },
  StreamingOutputCall(call) {
    const trailers = echoMetadata(call);
    writeResponses(call, call.request).then(() => {
      const status = askedStatus(call.request, trailers);
      if (status) call.emit("error", status);
      else call.end(trailers);
    });
  },
  FullDuplexCall(call) {
    const trailers = echoMetadata(call);
    // Requests are answered strictly in order, each after the previous one's responses.
    let chain = Promise.resolve();
    let failed = false;
    call.on("data", (req) => {
      chain = chain.then(async () => {
        if (failed) return;
        const status = askedStatus(req, trailers);
        if (status) {
          failed = true;
          call.emit("error", status);
          return;
        }
        await writeResponses(call, req);
      });
    });
    call.on("end", () => {
      chain.then(() => {
        if (!failed) call.end(trailers);
      });
    });
    call.on("error", () => {});
  },
  HalfDuplexCall(call) {
    const requests = [];
    call.on("data", (req) => requests.push(req));
    call.on("end", async () => {
      for (const req of requests) await writeResponses(call, req);
      call.end();
    });
    call.on("error", () => {});
  },
};

const args = parseArgs();
const server = new grpc.Server();
// UnimplementedCall is left out on purpose: grpc-js answers it with UNIMPLEMENTED.
server.addService(testing.TestService.service, handlers);
server.bindAsync(
  `127.0.0.1:${args.port ?? 0}`,
  grpc.ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) {
      console.error(`bind failed: ${err.message}`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ port }) + "\n");
  },
);

function stop() {
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
