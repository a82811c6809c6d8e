#!/usr/bin/env bash
# docker/ for real with Debian's podman and podman-compose: builds the Debian package and the
# three images from it (base image $LB_BASE_IMAGE, made locally with mmdebstrap: no registry),
# starts docker/compose.yaml with docker/compose.host.yaml (host network: this machine has no
# container networking) on a loopback /24 of its own, checks that lb1..lb3 serve the blue
# servers, pushes docker/push/haproxy-green.cfg through the controller, checks with real HTTP
# requests that every load balancer's frontend now routes to green1 and green2 only (and
# lb-bridge reports them), then compose down. Prints the images' sizes and how long each
# phase took. About 1-2 minutes after scripts/test.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

fail() { echo "docker_test: FAIL: $*" >&2; exit 1; }
now() { date +%s; }
t0=$(now)
tmp=$(mktemp -d)
# shellcheck source=tests/scripts/containers.sh
. tests/scripts/containers.sh
lb_containers_setup "$tmp"
scripts/package >/dev/null
t_package=$(now)

# A loopback /24 nobody else uses for this run: 127.A.B.0.
export LB_NET="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))"
for port in 5555 5556 5557 5558 5559 6666 8080; do
  if ss -Hltn "sport = :$port" | awk '{print $4}' | grep -qE "^(\*|0\.0\.0\.0|\[::\]|$LB_NET\.[0-9]+):$port$"; then
    fail "port $port is taken on a wildcard address or on $LB_NET.0/24: $(ss -Hltn "sport = :$port")"
  fi
done
project="lbci$$"
compose=(podman-compose --podman-path "$repo/tests/scripts/podman-host-network" -p "$project"
  -f docker/compose.yaml -f docker/compose.host.yaml)
cleanup() {
  local rc=$?
  trap - EXIT
  if [ "$rc" != 0 ]; then
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
      echo "--- logs of $c"; podman logs --tail 30 "$c" 2>&1 || true
    done
  fi
  # -v: the named volumes and the anonymous ones of the images' VOLUME lines.
  "${compose[@]}" down -v >/dev/null 2>&1 || true
  podman volume ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman volume rm >/dev/null 2>&1 || true
  podman network rm "${project}_default" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

echo "docker_test: building the images (base $LB_BASE_IMAGE)"
"${compose[@]}" build >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; fail "compose build"; }
t_build=$(now)
for image in agent bridge controller; do
  size=$(podman image inspect "localhost/lb-agent/$image:latest" --format '{{.Size}}')
  echo "docker_test: image localhost/lb-agent/$image: $((size / 1000000)) MB"
done
base=$(podman image inspect "$LB_BASE_IMAGE" --format '{{.Size}}')
echo "docker_test: of which the base image $LB_BASE_IMAGE: $((base / 1000000)) MB (shared)"

echo "docker_test: compose up on $LB_NET.0/24"
"${compose[@]}" up -d >"$tmp/up.log" 2>&1 || { tail -40 "$tmp/up.log"; fail "compose up"; }
container() {
  podman ps --filter "label=io.podman.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}
controller=$(container controller)
[ -n "$controller" ] || fail "no controller container running"

# GET / of each load balancer N times; prints the distinct answers, sorted, on one line.
answers() {
  local url=$1 n=$2 out=""
  for _ in $(seq "$n"); do
    out+="$(curl -s -m 2 "$url" || echo "(no answer)")"$'\n'
  done
  sort -u <<<"$out" | grep . | tr '\n' ' ' | sed 's/ $//'
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local deadline=$(( $(now) + $1 )) what=$2
  shift 2
  until "$@"; do
    [ "$(now)" -lt "$deadline" ] || fail "$what: not within the deadline"
    sleep 0.5
  done
}
serves() { [ "$(answers "http://$LB_NET.$1:8080/" 6)" = "$2" ]; }
agents_known() {
  podman exec "$controller" lbctl fleet agents --json --control "tcp://$LB_NET.20:5559" 2>/dev/null |
    python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)["agents"]) == 3 else 1)'
}
for n in 11 12 13; do wait_for 90 "lb at $LB_NET.$n serving blue1 and blue2" serves "$n" "blue1 blue2"; done
wait_for 60 "the controller knowing lb1, lb2 and lb3" agents_known
t_up=$(now)
echo "docker_test: lb1..lb3 serve blue1 and blue2; the controller knows the three agents"

echo "docker_test: pushing push/haproxy-green.cfg through the controller"
podman exec "$controller" fleet-push /push/haproxy-green.cfg --group web --expect 3 --timeout 60 ||
  fail "fleet push did not apply everywhere"
for n in 11 12 13; do
  got=$(answers "http://$LB_NET.$n:8080/" 20)
  [ "$got" = "green1 green2" ] || fail "lb at $LB_NET.$n answers \"$got\" after the push, not green1 and green2"
done
backends=$(curl -s -m 5 -X POST "http://$LB_NET.11:6666/getBackends" |
  python3 -c 'import json,sys; print(" ".join(sorted(s["instance_id"] for s in json.load(sys.stdin)["message"])))')
[ "$backends" = "green1 green2" ] || fail "lb-bridge reports \"$backends\", not green1 green2"
t_push=$(now)
echo "docker_test: every frontend routes to green1 and green2 only; lb-bridge reports them"

"${compose[@]}" down -v >/dev/null 2>&1 || fail "compose down"
left=$(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}')
[ -z "$left" ] || fail "containers left after compose down: $left"
t_down=$(now)
echo "docker_test: seconds: package $((t_package - t0)), build $((t_build - t_package)), up until serving $((t_up - t_build)), push and checks $((t_push - t_up)), down $((t_down - t_push))"
echo "docker_test: 1 passed, 0 failed"
