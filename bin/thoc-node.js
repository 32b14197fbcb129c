#!/usr/bin/env node
// The CLI entry point; the code is built into dist/ by `npm run build`.

// Peers and operators dial agents by IP with TLS (certificates carry IP SANs); grpc-js passes the IP
// as the TLS server name, for which Node prints DEP0123 on every call. The check is by IP SAN either way.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  const code = typeof rest[0] === "object" && rest[0] ? rest[0].code : rest[1];
  if (code === "DEP0123") return;
  return emitWarning.call(process, warning, ...rest);
};
import("../dist/cli/main.js").catch((err) => {
  if (err && err.code === "ERR_MODULE_NOT_FOUND" && /dist\/cli\/main\.js/.test(String(err.message))) {
    console.error("thoc-node: not built yet: run `npm run build` in the thoc-node directory");
    process.exit(1);
  }
  throw err;
});
