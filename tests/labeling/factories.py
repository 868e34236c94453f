"""Small builders for test data: images made with Pillow, archives made with zipfile."""
import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_bytes(seed=0, size=(12, 12), mode="L"):
    """A small PNG whose pixels depend on ``seed``, so each seed gives new content."""
    image = Image.new(mode, size, color=0 if mode == "L" else (0, 0, 0))
    pixels = image.load()
    for x in range(size[0]):
        for y in range(size[1]):
            value = (x * 31 + y * 17 + seed * 101) % 256
            pixels[x, y] = value if mode == "L" else (value, (value * 3) % 256, (value * 7) % 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_with_declared_size(width, height):
    """A tiny valid PNG whose header claims ``width`` x ``height`` (a bomb's header)."""
    data = bytearray(png_bytes(size=(1, 1)))
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def bar_png(kind, offset):
    """An 8x8 PNG of one dark bar: a horizontal ("h") or vertical ("v") one at row or
    column ``offset % 8``, a little lighter for each further multiple of 8."""
    pixels = np.full((8, 8), 255, dtype=np.uint8)
    shade = min(30 * (offset // 8), 150)
    if kind == "h":
        pixels[offset % 8, :] = shade
    else:
        pixels[:, offset % 8] = shade
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
