#!/usr/bin/env bash
# Installs a vfvm .deb into a fresh Debian 12 chroot and checks it: dpkg -i
# installs cleanly, vfvm --version runs, the man pages render, systemd-analyze
# verify accepts the units, the completions load, and dpkg -r leaves only the
# conffiles behind (dpkg -P not even those). Prints @@pkg.KEY=VALUE markers;
# exits non-zero at the first failure. As root: bash resources/test-package.sh DEB
# The Debian 12 base system (debootstrap, ~2 min) is cached as a tarball under
# the testbed cache directory; each run unpacks a fresh copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/testbed.env"
deb=$(realpath "${1:?usage: $0 DEB}")
[ "$(id -u)" = 0 ] || { echo "test-package: needs root (chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null ||
  { echo "test-package: debootstrap not found; run: bash resources/setup-host.sh" >&2; exit 1; }

base=$CACHE/debian12-base.tar.gz
if [ ! -f "$base" ]; then
  echo "test-package: building the Debian 12 base system (once)"
  t=$(mktemp -d)
  debootstrap --variant=minbase --include=systemd,man-db bookworm "$t/root" \
    http://deb.debian.org/debian >"$t/log" 2>&1 || { tail -20 "$t/log" >&2; rm -rf "$t"; exit 1; }
  mkdir -p "$CACHE"
  tar -C "$t/root" --numeric-owner -czf "$base.tmp" . && mv "$base.tmp" "$base"
  rm -rf "$t"
fi

d=$(mktemp -d)
cleanup() { umount "$d/proc" 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
tar -C "$d" --numeric-owner -xzf "$base"
mount -t proc proc "$d/proc"
cp "$deb" "$d/tmp/vfvm.deb"
inside() { chroot "$d" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
marker() { echo "@@pkg.$1=$2"; }
fail() { echo "@@pkg.error=$*"; exit 1; }
# Everything on the filesystem but what dpkg, man's cache and systemd's
# runtime state keep for themselves.
files() { inside find / -xdev \( -path /proc -o -path /tmp -o -path /run -o -path /var/lib/dpkg \
  -o -path /var/cache/man -o -path /var/log \) -prune -o -print | LC_ALL=C sort; }

files >"$d/tmp/before"
out=$(inside dpkg -i /tmp/vfvm.deb 2>&1) || { echo "$out"; fail "dpkg -i failed"; }
echo "$out" | grep -qiE 'warning|error' && { echo "$out"; fail "dpkg -i printed a warning"; }
marker install ok
marker version "$(inside vfvm --version)"
for page in vfvm vfvm-run vfvm-ctl vfvm-iov; do
  text=$(inside man -P cat "$page" 2>/dev/null) || fail "man $page failed"
  marker "man.$page" "$(echo "$text" | grep -c .) lines"
done
inside man -P cat vfvm-run 2>/dev/null | grep -q 'VM FILES' || fail "man vfvm-run has no VM FILES section"
for unit in $(cd "$d/lib/systemd/system" && ls vfvm*.service); do
  out=$(inside systemd-analyze verify "/lib/systemd/system/$unit" 2>&1) || { echo "$out"; fail "systemd-analyze verify $unit"; }
  [ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify $unit printed warnings"; }
  marker "verify.$unit" ok
done
inside bash -c '. /usr/share/bash-completion/completions/vfvm && complete -p vfvm' >/dev/null ||
  fail "bash completion does not load"
marker completion.bash ok
conffiles=$(inside dpkg-query --control-show vfvm conffiles | awk '{print $1}' | LC_ALL=C sort)
marker conffiles "$(echo $conffiles)"

out=$(inside dpkg -r vfvm 2>&1) || { echo "$out"; fail "dpkg -r failed"; }
files >"$d/tmp/after"
# What is new after dpkg -r: the conffiles and the directories that hold them.
left=$(LC_ALL=C comm -13 "$d/tmp/before" "$d/tmp/after")
for f in $left; do
  case " $(echo $conffiles) " in *" $f "*) continue ;; esac
  [ -d "$d$f" ] && echo "$conffiles" | grep -q "^$f/" && continue
  fail "dpkg -r left $f"
done
marker removed "$(echo $left)"
inside dpkg -P vfvm >/dev/null 2>&1 || fail "dpkg -P failed"
files >"$d/tmp/purged"
left=$(LC_ALL=C comm -13 "$d/tmp/before" "$d/tmp/purged")
[ -z "$left" ] || fail "dpkg -P left $(echo $left)"
marker purged ok
