"""Screenshots read straight from Xvfb's framebuffer and encoded as PNG in the guest.

Xvfb started with ``-fbdir DIR`` keeps its screen in ``DIR/Xvfb_screen0``: an
XWD image that it maps shared, so the pixels on the screen are one ``mmap``
away -- no X request, no helper process, no temporary file.  Pillow converts
and scales; the PNG itself is written here (no row filter, zlib level 1),
which is several times faster than Pillow's encoder for a desktop and
compresses a desktop about as well.

Must not: talk to the X server (input lives in ``xinput``), or take long in
the guest's single thread (a capture is a copy of the screen plus an encode).
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from typing import Any, Optional, Tuple

from . import protocol
from .errors import CallError

_XWD_HEADER = struct.Struct(">25I")
_XWD_COLOR = 12  # bytes per colormap entry after the header
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_pil: Any = None


def system_packages() -> None:
    """Put the image's own Debian site-packages on ``sys.path`` (appended: never ahead of
    the guest's standard library).

    The guest runs on the guest bundle's Python with ``-I -S``, so neither the
    sandbox's environment nor its packages change what it imports; the
    desktop's libraries (Pillow) come from the image's Debian packages, built
    for the same Python where the image is ours.
    """
    import sys

    version = "python%d.%d" % sys.version_info[:2]
    for folder in (
        "/usr/lib/python3/dist-packages",
        "/usr/local/lib/%s/dist-packages" % version,
        "/usr/lib/%s/dist-packages" % version,
    ):
        if folder not in sys.path and os.path.isdir(folder):
            sys.path.append(folder)


def pillow() -> Any:
    """``PIL.Image``, imported on first use, with a clear error where it is missing."""
    global _pil
    if _pil is None:
        system_packages()
        try:
            from PIL import Image
        except ImportError:
            raise CallError(
                protocol.E_DESKTOP,
                "screenshots need Pillow (Debian package python3-pil) in the sandbox image; "
                "use the sbx-desktop image or add python3-pil to the image's recipe",
            ) from None
        _pil = Image
    return _pil


def _resample(name: str) -> Any:
    image = pillow()
    filters = getattr(image, "Resampling", image)
    return {"lanczos": filters.LANCZOS, "bilinear": filters.BILINEAR, "nearest": filters.NEAREST}[
        name
    ]


class Framebuffer:
    """Xvfb's screen, mapped read-only: snapshots for change detection, images for screenshots."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.map = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        fields = _XWD_HEADER.unpack_from(self.map, 0)
        header_size = fields[0]
        self.depth = fields[3]
        self.width = fields[4]
        self.height = fields[5]
        byte_order = fields[7]
        self.bits_per_pixel = fields[11]
        self.stride = fields[12]
        ncolors = fields[19]
        self.offset = header_size + ncolors * _XWD_COLOR
        self.size = self.stride * self.height
        if byte_order != 0:
            raise CallError(
                protocol.E_DESKTOP, "the framebuffer is big-endian, which screenshots do not read"
            )
        if self.bits_per_pixel == 32:
            self.rawmode = "BGRX"
        elif self.bits_per_pixel == 16:
            self.rawmode = "BGR;16"
        else:
            raise CallError(
                protocol.E_DESKTOP,
                "the framebuffer has %d bits per pixel; start the desktop with depth 24 or 16"
                % self.bits_per_pixel,
            )
        if self.offset + self.size > len(self.map):
            raise CallError(
                protocol.E_DESKTOP, "the framebuffer file is shorter than its header says"
            )

    def snapshot(self) -> bytes:
        """A copy of the pixels as they are now (a few ms even for a large screen)."""
        return self.map[self.offset : self.offset + self.size]

    def image(self, pixels: Optional[bytes] = None) -> Any:
        """The screen (or an earlier ``snapshot``) as an RGB Pillow image."""
        data = self.snapshot() if pixels is None else pixels
        return pillow().frombuffer(
            "RGB", (self.width, self.height), data, "raw", self.rawmode, self.stride, 1
        )

    def close(self) -> None:
        try:
            self.map.close()
        except (BufferError, ValueError):
            pass


def render(
    fb: Framebuffer,
    pixels: Optional[bytes],
    *,
    region: Optional[Tuple[int, int, int, int]] = None,
    size: Optional[Tuple[int, int]] = None,
    upscale: int = 1,
    resample: str = "bilinear",
) -> Tuple[bytes, int, int]:
    """PNG bytes, width and height of the screen, a ``region`` of it, resized to ``size``.

    ``region`` is in screen pixels; ``upscale`` repeats each pixel as an n-by-n
    block (nearest neighbour), so a zoomed region keeps its exact pixels.
    """
    image = fb.image(pixels)
    if region is not None:
        x0, y0, x1, y1 = region
        if not (0 <= x0 < x1 <= fb.width and 0 <= y0 < y1 <= fb.height):
            raise CallError(
                protocol.E_BAD_REQUEST,
                "region %r is not inside the %dx%d screen" % (list(region), fb.width, fb.height),
            )
        image = image.crop((x0, y0, x1, y1))
    if size is not None and tuple(size) != image.size:
        image = image.resize((int(size[0]), int(size[1])), _resample(resample))
    if upscale > 1:
        image = image.resize(
            (image.size[0] * upscale, image.size[1] * upscale), _resample("nearest")
        )
    return encode_png(image), image.size[0], image.size[1]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(image: Any, level: int = 1) -> bytes:
    """An 8-bit RGB PNG of ``image``: every row unfiltered, one zlib stream at ``level``.

    Desktops are mostly flat colours and repeated glyphs, which deflate finds
    without row filters; skipping Pillow's per-row filter search is what makes
    this fast.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    raw = image.tobytes()
    stride = width * 3
    rows = b"\x00" + b"\x00".join(raw[i : i + stride] for i in range(0, len(raw), stride))
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY)
    body = packer.compress(rows) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
