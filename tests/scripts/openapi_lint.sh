#!/usr/bin/env bash
# Lints bridge/openapi.json (the /v1 API's contract, served at GET /v1/openapi.json) with
# Redocly CLI's recommended rules, every one an error (tests/openapi/redocly.yaml). The linter comes from the npm
# registry at the version pinned in tests/openapi/package-lock.json (`npm ci`, test tooling
# only; node_modules is not tracked). Registered as the ctest test OpenApi.lint
# (tests/CMakeLists.txt). A missing node or npm is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "openapi_lint: FAIL: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node not found: install Node.js 20 or later (with npm)"
command -v npm >/dev/null || fail "npm not found: install npm"
# No telemetry, no update check: CI reaches the npm registry and nothing else.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
npm ci --prefix tests/openapi --no-audit --no-fund --ignore-scripts --loglevel=error ||
  fail "npm ci in tests/openapi failed"
doc=${1:-bridge/openapi.json}  # another document: to prove that a bad one fails
rc=0
out=$(tests/openapi/node_modules/.bin/redocly lint --config tests/openapi/redocly.yaml "$doc" 2>&1) ||
  rc=$?
grep -v -e '[║╔╚]' <<<"$out" || true  # without Redocly's banner about Node.js versions
[ "$rc" = 0 ] || fail "redocly lint found problems in $doc (above), exit $rc"
echo "openapi_lint: $doc passes redocly lint (recommended-strict)"
