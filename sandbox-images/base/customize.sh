# Make a rootfs into a sandbox rootfs: the non-root user and the writable mount points.
#
# Usage: sh customize.sh ROOT
#   ROOT is the rootfs to change: mmdebstrap's chroot directory (as a
#   --customize-hook), or "/" inside a build container (`sbx images build --base`).
#
# Runs for sbx-base and, with the same packages underneath, for every image
# bootstrapped on top of it, so it must give the same result every time.  It
# must not install packages or reach the network.  A base image that already
# has a uid/gid 1000 of another name (e.g. ubuntu's "ubuntu") gives them up.
set -eu

root="${1:?usage: customize.sh ROOT}"

in_root() {
    chroot "$root" "$@"
}

existing_user=$(in_root getent passwd 1000 | cut -d: -f1 || true)
if [ -n "$existing_user" ] && [ "$existing_user" != sandbox ]; then
    in_root userdel --remove "$existing_user" 2>/dev/null || in_root userdel "$existing_user"
fi
existing_group=$(in_root getent group 1000 | cut -d: -f1 || true)
if [ -n "$existing_group" ] && [ "$existing_group" != sandbox ]; then
    in_root groupdel "$existing_group"
fi

if ! in_root getent group sandbox >/dev/null; then
    in_root groupadd --gid 1000 sandbox
fi
if ! in_root getent passwd sandbox >/dev/null; then
    in_root useradd --no-log-init --uid 1000 --gid 1000 --create-home \
        --home-dir /home/sandbox --shell /bin/bash sandbox
fi

# Mount points of the sandbox's tmpfs mounts; present and correctly owned in
# the image so that a container started without them behaves the same.
install -d -m 0755 -o 1000 -g 1000 "$root/workspace" "$root/home/sandbox"
chmod 0755 "$root/workspace"
install -d -m 1777 "$root/tmp"
install -d -m 1777 "$root/tmp/.X11-unix"
chmod 1777 "$root/tmp/.X11-unix"
install -d -m 0755 "$root/run"
