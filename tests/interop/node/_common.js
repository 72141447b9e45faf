// Shared helpers of the Node.js interop peers: argument parsing, the interop protos.
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

export const PROTO_ROOT = "/usr/share/grpc-proto";
export const TEST_PROTO = "grpc/testing/test.proto";

export const ECHO_INITIAL = "x-grpc-test-echo-initial";
export const ECHO_TRAILING = "x-grpc-test-echo-trailing-bin";
export const SPECIAL_MESSAGE =
  "\t\ntest with whitespace\r\nand Unicode BMP \u263A and non-BMP \uD83D\uDE08\t\n";

/** `--name value` and `--name=value` pairs as an object; `--flag` alone is `true`. */
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    if (eq > 0) {
      out[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      out[arg.slice(2)] = argv[++i];
    } else {
      out[arg.slice(2)] = true;
    }
  }
  return out;
}

/** The `grpc.testing` package loaded at run time from Debian's grpc-proto files. */
export function loadTesting() {
  const definition = protoLoader.loadSync(TEST_PROTO, {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).grpc.testing;
}

/** Throws with `message` unless `cond` holds. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}
