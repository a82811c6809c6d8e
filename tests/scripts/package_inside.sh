#!/usr/bin/env bash
# Runs inside a fresh Debian container (package_test.sh), as root: installs the package given
# as $1 and checks the installed system. Any failed check exits non-zero.
set -euo pipefail
deb=$1
fail() { echo "package_inside: FAIL: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
# systemd only for systemd-analyze verify; the package itself needs none.
apt-get install -y -qq --no-install-recommends "$deb" systemd >/tmp/install.log 2>&1 ||
  { cat /tmp/install.log; fail "apt-get install $deb"; }

for p in lb-agent lb-bridge lbctl; do
  [ -x "/usr/bin/$p" ] || fail "/usr/bin/$p missing"
  "/usr/bin/$p" --version | grep -q "^$p " || fail "$p --version"
  [ -s "/usr/share/man/man1/$p.1.gz" ] || fail "no man page for $p"
  zcat "/usr/share/man/man1/$p.1.gz" | grep -q '^\.TH' || fail "$p.1.gz is not a man page"
done
# lb-controller comes with the fleet controller's own daemon: when it is there, all of it is.
if [ -e /usr/bin/lb-controller ]; then
  [ -s /usr/share/man/man1/lb-controller.1.gz ] || fail "no man page for lb-controller"
  dpkg-query -W -f='${Conffiles}\n' lb-agent |
    grep -q '^ /etc/lb-controller/lb-controller.cfg ' ||
    fail "/etc/lb-controller/lb-controller.cfg is not a conffile"
  cmp -s /etc/lb-controller/lb-controller.cfg /usr/share/lb-agent/lb-controller.cfg ||
    fail "no reference /usr/share/lb-agent/lb-controller.cfg"
  lb-controller --config /etc/lb-controller/lb-controller.cfg --check ||
    fail "lb-controller --check with the packaged settings"
fi

getent passwd lb-agent >/dev/null || fail "no user lb-agent"
[ "$(id -gn lb-agent)" = haproxy ] || fail "lb-agent's group is $(id -gn lb-agent), not haproxy"
getent passwd lb-bridge >/dev/null || fail "no user lb-bridge"
[ "$(stat -c %U:%G:%a /var/lib/lb-agent)" = lb-agent:haproxy:750 ] ||
  fail "/var/lib/lb-agent is $(stat -c %U:%G:%a /var/lib/lb-agent)"
dpkg-query -W -f='${Conffiles}\n' lb-agent | grep -q '^ /etc/lb-agent/lb-agent.cfg ' ||
  fail "/etc/lb-agent/lb-agent.cfg is not a conffile"

lb-agent --config /etc/lb-agent/lb-agent.cfg --check || fail "lb-agent --check (root)"
runuser -u lb-agent -- lb-agent --config /etc/lb-agent/lb-agent.cfg --check ||
  fail "lb-agent --check as lb-agent"

units=(/lib/systemd/system/lb-*.service)
[ ${#units[@]} -ge 2 ] || fail "units missing: ${units[*]}"
for unit in "${units[@]}"; do
  exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
  [ -x "$exec_start" ] || fail "$unit: ExecStart=$exec_start is not an installed program"
  ! grep -q /usr/local/ "$unit" || fail "$unit still names /usr/local/"
done
systemd-analyze verify "${units[@]}" >/tmp/verify.log 2>&1 ||
  { cat /tmp/verify.log; fail "systemd-analyze verify"; }
if grep -F -e lb-agent -e lb-bridge -e lb-controller /tmp/verify.log; then
  fail "systemd-analyze verify complains about the units (above)"
fi

completion=$(bash -c 'source /usr/share/bash-completion/completions/lbctl
  COMP_WORDS=(lbctl st); COMP_CWORD=1; _lbctl; echo "${COMPREPLY[*]}"
  COMP_WORDS=(lbctl fleet pu); COMP_CWORD=2; _lbctl; echo "${COMPREPLY[*]}"
  COMP_WORDS=(lbctl --tim); COMP_CWORD=1; _lbctl; echo "${COMPREPLY[*]}"')
[ "$completion" = $'status\npush\n--timeout' ] || fail "bash completion of lbctl: $completion"

# remove keeps the settings (changed by the operator) and the state; purge deletes them.
echo "# changed by the operator" >>/etc/lb-agent/lb-agent.cfg
touch /var/lib/lb-agent/kept
apt-get remove -y -qq lb-agent >/dev/null 2>&1 || fail "apt-get remove"
[ ! -e /usr/bin/lb-agent ] || fail "remove left /usr/bin/lb-agent"
grep -q "changed by the operator" /etc/lb-agent/lb-agent.cfg || fail "remove touched the settings"
[ -e /var/lib/lb-agent/kept ] || fail "remove deleted /var/lib/lb-agent"
apt-get purge -y -qq lb-agent >/dev/null 2>&1 || fail "apt-get purge"
[ ! -e /etc/lb-agent ] || fail "purge left /etc/lb-agent"
[ ! -e /var/lib/lb-agent ] || fail "purge left /var/lib/lb-agent"
echo "package_inside: installed, checked, removed and purged"
