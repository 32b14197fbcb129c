#!/usr/bin/env bash
# Regenerates proto/gen/ (TypeScript, protobuf-es v2) from proto/**/*.proto.
# Run from anywhere: `npm run proto`. The generated files are committed so a
# build needs no code generation; CI checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
rm -rf proto/gen
buf generate
echo "generated: $(find proto/gen -name '*.ts' | wc -l) files in proto/gen"
