#!/usr/bin/env bash
# The Debian package, for real: scripts/package builds it; lintian reports neither error nor
# warning; then in a fresh Debian bookworm container (podman, tests/scripts/containers.sh) it
# installs with `apt-get install ./lb-agent_*.deb`, and package_inside.sh checks the installed
# system: programs, users, conffile, `lb-agent --check` with the packaged config,
# `systemd-analyze verify` of the installed units, man pages, bash completion, and that remove
# keeps the settings while purge deletes them. About a minute after scripts/test.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
scripts/deps package-test
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/scripts/containers.sh
. tests/scripts/containers.sh
lb_containers_setup "$tmp"

deb=$(scripts/package)
[ -f "$deb" ] || fail "scripts/package printed \"$deb\", not a file"
case "$(basename "$deb")" in
  lb-agent_*_"$(dpkg --print-architecture)".deb) ;;
  *) fail "$deb is not named lb-agent_<version>_<arch>.deb" ;;
esac
echo "package_test: $deb, $(du -k "$deb" | cut -f1) KiB, installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"

echo "package_test: lintian"
lintian --fail-on error,warning "$deb" || fail "lintian reports errors or warnings (above)"

echo "package_test: installing into a fresh $LB_BASE_IMAGE container"
cp "$deb" "$tmp/"
podman run --rm -v "$tmp:/pkg:ro" -v "$PWD/tests/scripts/package_inside.sh:/package_inside.sh:ro" \
  "$LB_BASE_IMAGE" bash /package_inside.sh "/pkg/$(basename "$deb")" ||
  fail "the checks inside the container failed (above)"
echo "package_test: 1 passed, 0 failed"
