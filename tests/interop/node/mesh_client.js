// grpc-js calling mesh.v1.Mesh (the proto that `h2mesh proto` writes for it), e.g. through
// a proxy: `node mesh_client.js --address HOST:PORT --proto FILE --calls N`.
// Prints one JSON line: how many unary calls each replica answered, and one server stream.
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { parseArgs } from "./_common.js";

const args = parseArgs();
const definition = protoLoader.loadSync(path.basename(args.proto), {
  includeDirs: [path.dirname(args.proto)],
  keepCase: true,
});
const Mesh = grpc.loadPackageDefinition(definition).mesh.v1.Mesh;
const client = new Mesh(args.address, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 5000);

function work(key) {
  return new Promise((resolve, reject) => {
    client.Work({ key }, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply),
    );
  });
}

function count(key) {
  return new Promise((resolve, reject) => {
    const keys = [];
    const call = client.Count({ key }, { deadline: deadline() });
    call.on("data", (reply) => keys.push(reply.key));
    call.on("error", reject);
    call.on("end", () => resolve(keys));
  });
}

const replicas = {};
for (let i = 0; i < Number(args.calls || 30); i++) {
  const reply = await work(`js.${i}`);
  replicas[reply.replica] = (replicas[reply.replica] || 0) + 1;
}
const stream = await count("js");
client.close();
console.log(JSON.stringify({ replicas, stream }));
