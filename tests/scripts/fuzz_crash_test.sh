#!/usr/bin/env bash
# scripts/fuzz fails when a target crashes: runs it on the canary target (fuzz/canary_fuzz.cc,
# which aborts on its seed input) next to a healthy target, and expects exit 1, the canary's row
# marked FAILED with its crash input, the healthy row ok, and the crash input on disk.
# Uses scripts/fuzz's own build directory (build-fuzz), so that after `scripts/fuzz` in CI only
# the canary is built. About 15 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="build-fuzz"

fail() { echo "fuzz_crash_test: FAIL: $*" >&2; exit 1; }

rm -f "$build"/crashes/canary-*
rc=0
out=$(scripts/fuzz --seconds 3 --build-dir "$build" canary show_info 2>&1) || rc=$?
echo "$out"
[ "$rc" = 1 ] || fail "scripts/fuzz exited $rc on a crashing target, expected 1"
canary_row=$(grep -E '^canary ' "$build/fuzz-report.txt") || fail "no canary row in the report"
grep -q 'FAILED (exit [1-9][0-9]*, ERROR: libFuzzer: deadly signal)' <<<"$canary_row" ||
  fail "canary row does not say FAILED with the deadly signal: $canary_row"
grep -E '^show_info .* ok$' "$build/fuzz-report.txt" >/dev/null ||
  fail "the healthy target's row is not ok: $(grep '^show_info' "$build/fuzz-report.txt")"
crash=$(find "$build/crashes" -name 'canary-*' -type f | head -1)
[ -n "$crash" ] || fail "no crash input written to $build/crashes"
cmp -s "$crash" fuzz/corpus/canary/trigger || fail "$crash is not the canary's trigger input"
grep -qF "$crash" <<<"$canary_row" || fail "the report does not name the crash input $crash"
echo "fuzz_crash_test: 1 passed, 0 failed"
