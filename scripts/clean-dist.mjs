#!/usr/bin/env node
// Empties dist/ before a build: tsc never deletes the output of a moved or
// removed source file, and a stale dist/**/*.test.js would still be run.
import { rmSync } from "node:fs";
rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true });
