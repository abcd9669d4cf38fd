"""The self-contained guest every sandbox runs: Python, its libraries and the guest's code.

Images bring their own programs; the guest must not depend on them.  The
bundle is assembled once per engine from ``sbx-base`` (Debian's python3 with
its standard library and every shared library they load, the dynamic loader
included) plus the guest's code, and mounted read-only at ``/opt/sbx`` in
every sandbox.  The guest starts through the bundle's own loader, so it
runs in any Linux image -- ours, one built FROM ours, or a Debian/Ubuntu
image with no Python at all -- and a change to the guest needs no image
rebuild, only a new bundle.

Must not: know how the bundle is stored on an engine (the backend's
business: a volume on Docker), or include anything of the user's.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import PurePosixPath

from orchestrator.images.assets import guest_bytecode, guest_files

__all__ = [
    "ASSEMBLE_SCRIPT",
    "BUNDLE_DIR",
    "COMPLETE_MARKER",
    "bundle_key",
    "guest_command",
    "guest_tar",
]

BUNDLE_DIR = PurePosixPath("/opt/sbx")
"""Where the bundle is mounted in every sandbox (read-only)."""

COMPLETE_MARKER = ".complete"
"""Written last: a bundle without it was interrupted and is made again."""

ASSEMBLE_SCRIPT = r"""
set -eu
OUT=$1
R=$OUT/runtime
rm -rf "$R" "$OUT/$MARKER"
mkdir -p "$R/bin" "$R/lib"
PY=$(readlink -f /usr/bin/python3)
VER=$(basename "$PY")
cp -L "$PY" "$R/bin/python3"
cp -a "/usr/lib/$VER" "$R/lib/$VER"
for junk in test idlelib tkinter turtledemo ensurepip lib2to3 pydoc_data; do
    rm -rf "$R/lib/$VER/$junk"
done
for f in "$PY" /usr/lib/"$VER"/lib-dynload/*.so; do ldd "$f"; done \
    | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u | while read -r lib; do
        if [ -f "$lib" ]; then cp -L "$lib" "$R/lib/"; fi
    done
mkdir -p "$OUT/etc"
printf 'APT::Sandbox::User "root";\n' > "$OUT/etc/apt.conf"
LOADER=$(ls "$R"/lib/ld-linux*.so* | head -n 1)
ln -sf "$(basename "$LOADER")" "$R/lib/ld.so"
chmod -R a+rX "$OUT"
touch "$OUT/$MARKER"
"""
"""Run as root in a container of ``sbx-base`` with the bundle's storage at ``$1`` and the
guest's code already unpacked at ``$1/guest``; ``MARKER`` names ``COMPLETE_MARKER``."""


BUNDLE_LAYOUT = b"labelled volume 2\n"
"""Part of every bundle's key: bundles made before volumes were labelled have other names."""


def guest_command() -> list[str]:
    """How every sandbox starts its guest: the bundle's loader runs the bundle's Python."""
    runtime = BUNDLE_DIR / "runtime"
    return [
        str(runtime / "lib" / "ld.so"),
        "--library-path",
        str(runtime / "lib"),
        str(runtime / "bin" / "python3"),
        "-I",
        "-S",
        str(BUNDLE_DIR / "guest" / "main.py"),
    ]


def bundle_key(base_image_id: str) -> str:
    """What identifies a bundle: the guest's code, how it is assembled, the base it came from."""
    digest = hashlib.sha256(BUNDLE_LAYOUT + ASSEMBLE_SCRIPT.encode())
    digest.update(base_image_id.encode())
    for name, data in sorted(guest_files().items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def guest_tar() -> bytes:
    """The guest's code (and its bytecode for the bundle's Python) as a tar under ``guest/``."""
    files = guest_files()
    files.update(guest_bytecode(files))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"guest/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
