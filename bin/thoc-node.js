#!/usr/bin/env node
// The CLI entry point; the code is built into dist/ by `npm run build`.
import("../dist/cli/main.js").catch((err) => {
  if (err && err.code === "ERR_MODULE_NOT_FOUND" && /dist\/cli\/main\.js/.test(String(err.message))) {
    console.error("thoc-node: not built yet: run `npm run build` in the thoc-node directory");
    process.exit(1);
  }
  throw err;
});
