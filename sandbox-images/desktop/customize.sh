# Desktop rootfs hook: caches every sandbox would otherwise rebuild at start.
#
# Usage: sh customize.sh ROOT   (like base/customize.sh; run after the packages are in)
#
# fontconfig's cache: without it the first program that draws text (the
# window manager, at every desktop start) spends up to a second building one
# in the sandbox user's home.  A cache is valid while its font directory's
# mtime matches; the image's file times are clamped to SOURCE_DATE_EPOCH, so
# when that is set the font directories get that time first, as they will
# have in the image.  Inside the chroot, so that symlinked font directories
# (poppler's cMaps) resolve within the rootfs.
set -eu

root="${1:?usage: customize.sh ROOT}"

if [ -x "$root/usr/bin/fc-cache" ]; then
    if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
        for fonts in /usr/share/fonts /usr/local/share/fonts; do
            if [ -d "$root$fonts" ]; then
                chroot "$root" find -L "$fonts" -type d -newermt "@$SOURCE_DATE_EPOCH" \
                    -exec touch --date="@$SOURCE_DATE_EPOCH" {} +
            fi
        done
    fi
    chroot "$root" /usr/bin/fc-cache --system-only --force
fi
