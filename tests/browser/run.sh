#!/usr/bin/env bash
# Runs status_page_test.py (ctest: Browser.status_page): installs playwright-core from
# package-lock.json with `npm ci` into $LB_BROWSER_WORK (in the build tree, never the source
# tree), then runs the test with Debian's chromium. A missing node, npm or chromium is a failure
# with a clear message: scripts/deps installs chromium; node and npm come with the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${LB_BROWSER_WORK:?LB_BROWSER_WORK must name a directory for node_modules (tests/browser/CMakeLists.txt sets it)}"
python="${LB_TEST_PYTHON:-/usr/bin/python3}"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "status page test: $tool not found: install Node.js 20+ with npm" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "status page test: /usr/bin/chromium not found: run scripts/deps (Debian's chromium)" >&2; exit 1; }

mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$work/"
# playwright-core downloads no browser at install; the test uses /usr/bin/chromium.
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
export LB_NODE_MODULES="$work/node_modules"
export LB_BROWSER_OUT="${LB_BROWSER_OUT:-$work/out}"
mkdir -p "$LB_BROWSER_OUT"
cd "$here"
exec "$python" -m unittest -v status_page_test "$@"
