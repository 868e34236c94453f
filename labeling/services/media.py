"""Image normalisation at import (decode safely once, keep bounded copies) and what is
served of an image: a fresh rendering each time (:func:`labeling.bridge.image_render`).

Pillow's decompression-bomb warning is treated as an error and our own pixel cap is
checked from the header, before any pixel is decoded.
"""
import io
import random
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from labeling import bridge

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}
_WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "F"}


class ImageRejected(ValueError):
    """The bytes are not an image we accept; the message says why."""


@dataclass(frozen=True)
class NormalisedImage:
    extension: str
    image_png: bytes
    thumbnail_png: bytes
    width: int
    height: int


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def image_normalise(data: bytes, *, max_side: int, thumbnail_side: int, max_pixels: int) -> NormalisedImage:
    """Decode ``data`` and return a normalised PNG (mode ``L`` or ``RGB``, longest side
    at most ``max_side``) and a thumbnail. Raises :class:`ImageRejected` with a reason."""
    image, fmt, (width, height) = image_decode(data, max_pixels=max_pixels)
    normalised = image.copy()
    normalised.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    thumb = image.copy()
    thumb.thumbnail((thumbnail_side, thumbnail_side), Image.Resampling.LANCZOS)
    return NormalisedImage(
        extension=ALLOWED_FORMATS[fmt],
        image_png=_png(normalised),
        thumbnail_png=_png(thumb),
        width=width,
        height=height,
    )


def image_decode(data: bytes, *, max_pixels: int) -> tuple[Image.Image, str, tuple[int, int]]:
    """Decode ``data`` safely into an upright ``L`` or ``RGB`` image, as imports do;
    returns ``(image, format, (width, height))``. Raises :class:`ImageRejected`."""
    if not data:
        raise ImageRejected("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
                width, height = probe.size
                if fmt not in ALLOWED_FORMATS:
                    raise ImageRejected(f"unsupported image format {fmt!r}")
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"image is {width}x{height} = {width * height} pixels, over the cap of {max_pixels}"
                    )
                probe.verify()
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                image = _to_standard_mode(ImageOps.exif_transpose(opened))
        except ImageRejected:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageRejected(f"decompression bomb: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected("not an image (unrecognised or corrupt data)") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"corrupt image: {exc}") from exc
    return image, fmt, (width, height)


def _to_standard_mode(image: Image.Image) -> Image.Image:
    """RGB for colour, L for grayscale; transparency is flattened onto white."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in _WIDE_GRAY_MODES:
        return bridge.gray_stretched(image)
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    gray = image.mode in ("1", "LA") or (image.mode == "P" and bridge.palette_is_gray(image))
    if has_alpha:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat.convert("L") if gray else flat
    return image.convert("L" if gray else "RGB")


def image_serve(data: bytes, *, rng: random.Random | None = None) -> bytes:
    """The bytes to serve for the stored image ``data``: a fresh rendering, unless
    ``CROWDLOOP_RENDER_IMAGES`` is off (then the stored PNG itself)."""
    from django.conf import settings

    return bridge.image_render(data, rng=rng) if settings.CROWDLOOP_RENDER_IMAGES else data
