# shellcheck shell=bash
# Sourced by the tests that run containers (package_test.sh, docker_test.sh): podman set up as
# it works on this kind of CI machine, with nothing global changed, and a Debian bookworm base
# image made locally (no registry can be reached here).
#
# lb_containers_setup DIR: installs podman & co (scripts/deps containers), writes
#   DIR/containers.conf and exports CONTAINERS_CONF (runc, cgroupfs, host network, fixed
#   ulimits: crun, systemd cgroups, bridge networks and raising limits fail here), and makes
#   $LB_BASE_IMAGE (default localhost/debian:bookworm) with mmdebstrap + podman import unless
#   it exists. A user's machine with a registry needs none of this (docker/README.md).

lb_containers_setup() {
  local dir=$1
  scripts/deps containers
  cat >"$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  export CONTAINERS_CONF="$dir/containers.conf"
  LB_BASE_IMAGE=${LB_BASE_IMAGE:-localhost/debian:bookworm}
  export LB_BASE_IMAGE
  if ! podman image exists "$LB_BASE_IMAGE"; then
    echo "containers: making $LB_BASE_IMAGE with mmdebstrap (about a minute)" >&2
    mmdebstrap --quiet --variant=minbase bookworm "$dir/rootfs.tar"
    podman import --quiet "$dir/rootfs.tar" "$LB_BASE_IMAGE" >/dev/null
    rm -f "$dir/rootfs.tar"
  fi
}
