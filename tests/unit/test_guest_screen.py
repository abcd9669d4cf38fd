"""The guest's screenshots: reading an XWD framebuffer and writing PNGs, without an X server.

An XWD file like the one Xvfb maps is written by hand, so the header
parsing, the pixel conversion, cropping, scaling and the PNG encoder are
checked pixel for pixel.
"""

from __future__ import annotations

import importlib
import io
import struct
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image


@pytest.fixture
def guest(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("xscreen")


def _pattern(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            ((x * 7) % 256, (y * 11) % 256, (x + y) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image


def _xwd(path: Path, image: Image.Image, ncolors: int = 256) -> None:
    """An XWD file as Xvfb writes it: big-endian header, colormap, then BGRX rows."""
    width, height = image.size
    stride = width * 4 + 16  # rows padded, as a real framebuffer may be
    fields = [0] * 25
    fields[0] = 100 + 8  # header size (with a window name)
    fields[1] = 7
    fields[2] = 2
    fields[3] = 24
    fields[4], fields[5] = width, height
    fields[7] = 0  # LSBFirst
    fields[11] = 32
    fields[12] = stride
    fields[19] = ncolors
    header = struct.pack(">25I", *fields) + b"Xvfb\0\0\0\0"
    rows = bytearray()
    raw = image.tobytes("raw", "BGRX")
    for y in range(height):
        rows += raw[y * width * 4 : (y + 1) * width * 4] + b"\xee" * 16
    path.write_bytes(header + b"\0" * (12 * ncolors) + bytes(rows))


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def test_the_framebuffer_reads_back_exactly(guest: ModuleType, tmp_path: Path) -> None:
    screen = _pattern(64, 40)
    _xwd(tmp_path / "Xvfb_screen0", screen)
    fb = guest.Framebuffer(str(tmp_path / "Xvfb_screen0"))
    assert (fb.width, fb.height, fb.depth) == (64, 40, 24)
    png, width, height = guest.render(fb, None)
    assert (width, height) == (64, 40)
    assert _decode(png).tobytes() == screen.tobytes()
    fb.close()


def test_a_region_is_cropped_at_full_resolution_and_upscaled_by_whole_pixels(
    guest: ModuleType, tmp_path: Path
) -> None:
    screen = _pattern(64, 40)
    _xwd(tmp_path / "fb", screen)
    fb = guest.Framebuffer(str(tmp_path / "fb"))
    png, width, height = guest.render(fb, None, region=(10, 5, 30, 25))
    assert (width, height) == (20, 20)
    assert _decode(png).tobytes() == screen.crop((10, 5, 30, 25)).tobytes()
    png, width, height = guest.render(fb, None, region=(10, 5, 30, 25), upscale=3)
    assert (width, height) == (60, 60)
    big = _decode(png)
    assert big.resize((20, 20), Image.Resampling.NEAREST).tobytes() == (
        screen.crop((10, 5, 30, 25)).tobytes()
    )
    fb.close()


def test_a_snapshot_taken_earlier_is_what_gets_encoded(guest: ModuleType, tmp_path: Path) -> None:
    _xwd(tmp_path / "fb", _pattern(32, 16))
    fb = guest.Framebuffer(str(tmp_path / "fb"))
    before = fb.snapshot()
    assert before == fb.snapshot()  # unchanged screen, equal snapshots: that is "settled"
    png, _, _ = guest.render(fb, before, size=(16, 8))
    assert _decode(png).size == (16, 8)
    fb.close()


def test_a_region_off_the_screen_is_refused(guest: ModuleType, tmp_path: Path) -> None:
    _xwd(tmp_path / "fb", _pattern(32, 16))
    fb = guest.Framebuffer(str(tmp_path / "fb"))
    with pytest.raises(Exception, match="not inside the 32x16 screen"):
        guest.render(fb, None, region=(0, 0, 40, 10))
    fb.close()


def test_the_png_encoder_is_lossless_on_a_busy_image(guest: ModuleType) -> None:
    image = Image.effect_noise((200, 120), 80).convert("RGB")
    assert _decode(guest.encode_png(image)).tobytes() == image.tobytes()


def test_characters_map_to_keysyms_like_xdotool(tmp_path: Path, guest: ModuleType) -> None:
    xinput = importlib.import_module("sbx_guest.xinput")
    assert xinput.char_keysym("a") == ord("a")
    assert xinput.char_keysym("é") == 0xE9  # Latin-1 keysyms are the code point
    assert xinput.char_keysym("€") == 0x01000000 | 0x20AC  # others are Unicode keysyms
    assert xinput.char_keysym("\n") == 0xFF0D  # Return
    assert xinput.char_keysym("\t") == 0xFF09  # Tab
