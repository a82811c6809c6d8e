#!/usr/bin/env bash
# scripts/demo: builds only lb-agent and lb-bridge, with progress lines, in a build directory of
# its own; serves traffic; a second demo started meanwhile refuses (ports taken) without
# touching the first, whose haproxy keeps its pid and its traffic; SIGTERM stops the first and
# frees its ports. The demo's ports are fixed (5000, 5555, 5556, 6666, 8081-8083 on 127.0.0.1),
# so the test runs in a network namespace of its own (unshare --net: root, as CI runs it), where
# nothing else holds them. About 3 minutes on 2 cores (the build).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${LB_DEMO_TEST_IN_NETNS:-}" ]; then
  scripts/deps   # apt-get needs the network, which the namespace does not have
  [ "$(id -u)" = 0 ] || { echo "demo_test: FAIL: needs root (its own network namespace)" >&2; exit 1; }
  # shellcheck disable=SC2016  # $0 is expanded by the inner bash
  exec unshare --net env LB_DEMO_TEST_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0"' "$0"
fi

fail() { echo "demo_test: FAIL: $*" >&2; exit 1; }
ports=(5000 5555 5556 6666 8081 8082 8083)
port_taken() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
for port in "${ports[@]}"; do
  ! port_taken "$port" || fail "port $port is in use before the test: $(ss -Hltnp "sport = :$port")"
done

tmp=$(mktemp -d)
demo_pid=""
cleanup() {
  local rc=$?
  trap - EXIT
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  [ "$rc" = 0 ] || { echo "--- first demo's output"; cat "$tmp/demo1.log" 2>/dev/null || true; }
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

LB_BUILD_DIR="$tmp/build" LB_DEMO_DIR="$tmp/run" scripts/demo >"$tmp/demo1.log" 2>&1 &
demo_pid=$!
deadline=$(( $(date +%s) + 900 ))
until grep -q "lb-agent demo is running" "$tmp/demo1.log"; do
  kill -0 "$demo_pid" 2>/dev/null || fail "scripts/demo exited before it was running"
  [ "$(date +%s)" -lt "$deadline" ] || fail "scripts/demo not running after 15 minutes"
  sleep 1
done

grep -qE '^demo: \[[0-9]+%\] agent/src/[a-z_]+\.cc$' "$tmp/demo1.log" ||
  fail "no build progress line (demo: [N%] agent/src/FILE.cc) in the demo's output"
{ [ -x "$tmp/build/agent/lb-agent" ] && [ -x "$tmp/build/bridge/lb-bridge" ]; } ||
  fail "lb-agent or lb-bridge not built"
built_extra=$(find "$tmp/build" -type f -executable \( -path '*/tests/*' -o -path '*/bench/*' \
  -o -name lbctl -o -name 'lb-controller' \) ! -name '*.sh' ! -path '*/CMakeFiles/*' | head -3)
[ -z "$built_extra" ] || fail "the demo built more than it runs: $built_extra"

echo "demo_test: built lb-agent and lb-bridge only, $(grep -cE '^demo: \[' "$tmp/demo1.log") progress lines"
answer=$(curl -s -m 5 http://127.0.0.1:5000/) || fail "no answer through haproxy on 127.0.0.1:5000"
[[ "$answer" == "hello from node"* ]] || fail "127.0.0.1:5000 answered \"$answer\""
haproxy_pid=$(cat "$tmp/run/haproxy.pid")
page=$(curl -s -m 5 http://127.0.0.1:6666/) || fail "no status page on http://127.0.0.1:6666/"
[[ "$page" == *"<title>lb-agent status</title>"* ]] || fail "GET http://127.0.0.1:6666/ is not the status page"
servers=$(curl -s -m 5 http://127.0.0.1:6666/ui/status) || fail "no answer from /ui/status"
[[ "$servers" == *'"name":"node1"'* ]] || fail "/ui/status does not list node1: $servers"
echo "demo_test: the status page is served, /ui/status lists the demo's servers"

# A second demo while the first runs: refused before it starts or touches anything.
rc=0
LB_BUILD_DIR="$tmp/build" LB_DEMO_DIR="$tmp/run2" timeout 120 scripts/demo >"$tmp/demo2.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$tmp/demo2.log"; fail "a second demo exited $rc, expected 1"; }
grep -q "not starting: port(s) taken on 127.0.0.1: 5000" "$tmp/demo2.log" ||
  { cat "$tmp/demo2.log"; fail "the second demo does not say which ports are taken"; }
[ ! -e "$tmp/run2" ] || fail "the second demo created its run directory"
echo "demo_test: a second demo refused: $(grep 'not starting' "$tmp/demo2.log")"
{ [ "$(cat "$tmp/run/haproxy.pid")" = "$haproxy_pid" ] && kill -0 "$haproxy_pid"; } ||
  fail "the first demo's haproxy (pid $haproxy_pid) changed or died"
for _ in 1 2 3 4 5 6; do
  answer=$(curl -s -m 5 http://127.0.0.1:5000/) || fail "the first demo stopped serving"
  [[ "$answer" == "hello from node"* ]] || fail "the first demo answered \"$answer\""
done

kill -TERM "$demo_pid"
rc=0
wait "$demo_pid" || rc=$?
demo_pid=""
[ "$rc" = 143 ] || fail "the demo exited $rc on SIGTERM, expected 143"
for port in "${ports[@]}"; do
  deadline=$(( $(date +%s) + 10 ))
  while port_taken "$port"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "port $port still taken after the demo stopped"
    sleep 0.2
  done
done
echo "demo_test: 1 passed, 0 failed"
