#!/usr/bin/env bash
# Regenerates the Python and TypeScript SDKs from the OpenAPI document the code produces.
# Run it after changing the API; `cargo test` fails (sdk test) while sdk/openapi.json is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run -q -p relay -- openapi > sdk/openapi.json

venv="${SDK_VENV:-target/sdk-venv}"
if [ ! -x "$venv/bin/openapi-python-client" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "openapi-python-client==0.29.1"
fi
"$venv/bin/openapi-python-client" generate --path sdk/openapi.json \
  --config sdk/python-generator.yaml --output-path sdk/python --overwrite

cd sdk/typescript
npm ci --silent
npx openapi-typescript ../openapi.json -o src/schema.d.ts
npx tsc -p tsconfig.json
echo "SDKs regenerated from sdk/openapi.json"
