#!/bin/sh
# Builds (once) a Debian trixie chroot holding the real editors the e2e tests drive: Krita 5.2.x and GIMP 3.0.x.
# Debian 12 ships only Krita 5.1.5 and GIMP 2.10 without Python. Needs root and Debian's package mirror.
# Usage: tests/e2e/editors_chroot.sh [ROOT]   (default /var/lib/retouch-trixie, or $RETOUCH_EDITORS_ROOT)
# Idempotent: a finished chroot (marker file) is only re-mounted. No pyzmq is installed inside on purpose:
# the plugins must run on the pyzmq wheels their bundles carry.
set -eu
R="${1:-${RETOUCH_EDITORS_ROOT:-/var/lib/retouch-trixie}}"
MARKER="$R/.retouch-editors-ready"

mount_all() {
    for d in proc dev dev/pts sys; do
        mountpoint -q "$R/$d" || mount --bind "/$d" "$R/$d"
    done
    mkdir -p "$R/dev/shm"
    mountpoint -q "$R/dev/shm" || mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" 2>/dev/null || true
}

if [ -f "$MARKER" ]; then
    mount_all
    echo "editors chroot ready at $R"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "editors_chroot.sh: needs root (debootstrap, mount)" >&2
    exit 1
fi
command -v debootstrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
# The mirror apt already uses: the URIs: line of its deb822 sources, else the first deb line of sources.list.
MIRROR=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -m1 'debian/\?$' || true)
[ -n "$MIRROR" ] || MIRROR=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -m1 debian || true)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
echo "debootstrap trixie from $MIRROR into $R"
mkdir -p "$R"
[ -x "$R/usr/bin/apt-get" ] || debootstrap --variant=minbase trixie "$R" "$MIRROR" >/dev/null
mount_all
chroot "$R" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -qq krita gimp python3 python3-gi xvfb xauth \
    xdotool imagemagick fonts-dejavu-core >/dev/null
chroot "$R" dpkg-query -W krita gimp
touch "$MARKER"
echo "editors chroot ready at $R"
