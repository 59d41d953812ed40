"""One texture atlas per tile: the images a tile's surfaces use, packed into one JPEG.

Images go on shelves (tallest first) with a gutter of repeated edge pixels around each, so
filtering and mipmaps never mix neighbours. When they do not fit in ``MAX_ATLAS_PX`` square,
all are scaled down by the same factor until they do. Texture coordinates outside [0, 1]
(repeating textures) are clamped: an atlas cannot repeat one of its parts.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from geo.errors import SourceError
from tiles.threed.glb import TileMesh, TileTexture

MAX_ATLAS_PX = 4096
#: a bigger source image is refused before decoding (a 16k x 16k JPEG decodes to 768 MB)
MAX_IMAGE_PIXELS = 8192 * 8192
FORMATS = ("JPEG", "PNG", "WEBP")
GUTTER = 2
JPEG_QUALITY = 85


def with_atlas(mesh: TileMesh, images: list[str], max_px: int = MAX_ATLAS_PX) -> TileMesh:
    """``mesh`` with its ``texture`` set from ``images`` (paths; ``mesh.image`` indexes them);
    unchanged when no vertex is textured."""
    if mesh.image is None or mesh.uv is None or not (mesh.image >= 0).any():
        return mesh
    used = np.unique(mesh.image[mesh.image >= 0])
    sizes = np.empty((len(used), 2))
    for k, i in enumerate(used):  # headers first, one file open at a time
        with _open(images[i]) as im:
            sizes[k] = im.size
    scale, places, width, height = _layout(sizes, max_px)
    atlas = np.zeros((height, width, 3), dtype=np.uint8)
    rects = np.zeros((len(used), 4))  # x, y, w, h of each image inside its gutter
    for k, (i, (x, y)) in enumerate(zip(used, places)):
        w, h = _scaled(sizes[k], scale)
        with _open(images[i]) as im:
            im.draft("RGB", (w, h))  # JPEG: decode at a reduced size when that is enough
            pixels = np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
        atlas[y:y + h + 2 * GUTTER, x:x + w + 2 * GUTTER] = np.pad(
            pixels, ((GUTTER, GUTTER), (GUTTER, GUTTER), (0, 0)), mode="edge")
        rects[k] = (x + GUTTER, y + GUTTER, w, h)
    slot = np.searchsorted(used, np.maximum(mesh.image, 0))
    r = rects[slot]
    u, v = np.clip(mesh.uv[:, 0], 0.0, 1.0), np.clip(mesh.uv[:, 1], 0.0, 1.0)
    textured = mesh.image >= 0
    uv = np.column_stack([(r[:, 0] + u * r[:, 2]) / width, (r[:, 1] + (1.0 - v) * r[:, 3]) / height])
    uv[~textured] = 0.0
    out = io.BytesIO()
    Image.fromarray(atlas).save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    mesh.texture = TileTexture(uv, textured, out.getvalue(), "image/jpeg")
    return mesh


def _open(path: str) -> Image.Image:
    """An image opened lazily (header only), refused when too big to decode safely."""
    try:
        im = Image.open(path, formats=FORMATS)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceError(f"texture image {path}: cannot be read ({str(exc).splitlines()[0][:120]}); "
                          "fix it, or export without --textures") from None
    if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
        im.close()
        raise SourceError(f"texture image {path}: {im.size[0]:,} x {im.size[1]:,} pixels is over the "
                          f"{MAX_IMAGE_PIXELS:,}-pixel bound; downscale it, or export without --textures")
    return im


def _scaled(size: np.ndarray, scale: float) -> tuple[int, int]:
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


def _shelves(boxes: list[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Top-left corners of ``boxes`` on shelves of ``width``, tallest first, and the height used."""
    places = [(0, 0)] * len(boxes)
    x = y = shelf = 0
    for k in sorted(range(len(boxes)), key=lambda i: -boxes[i][1]):
        w, h = boxes[k]
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        places[k] = (x, y)
        x, shelf = x + w, max(shelf, h)
    return places, y + shelf


def _layout(sizes: np.ndarray, max_px: int) -> tuple[float, list[tuple[int, int]], int, int]:
    """Scale, top-left corner of each image's gutter box, and the atlas width and height."""
    pad = 2 * GUTTER
    scale = min(1.0, (max_px - pad) / sizes.max())
    while True:
        boxes = [(w + pad, h + pad) for w, h in (_scaled(s, scale) for s in sizes)]
        square = min(max_px, max(max(w for w, _ in boxes), math.ceil(math.sqrt(sum(w * h for w, h in boxes)))))
        for width in (square, max_px):  # near square first; the widest before scaling down
            places, height = _shelves(boxes, width)
            if height <= max_px:
                return scale, places, width, height
        scale *= 0.8
        if scale * sizes.max() < 1:  # cannot happen with a sane image count; a guard against looping
            raise SourceError(f"{len(sizes):,} texture images do not fit one {max_px} px atlas")

