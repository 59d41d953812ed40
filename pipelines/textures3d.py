"""Texture images of a city model file, checked once per image while its buildings are read.

An image path comes from the (untrusted) file: it is resolved against the file's folder and
must stay inside it (no absolute path, no URL, no ``..``, no link out); the image must exist,
be a JPEG, PNG or WebP, and have at most ``MAX_IMAGE_PIXELS`` pixels, read from its header
before anything is decoded. A missing or refused image leaves its surfaces untextured, with
one message per image; an image that is there but too big or unreadable stops the export.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from geo.city3d import Building3D, ReadReport, SkipReason
from geo.errors import SourceError
from tiles.threed.atlas import FORMATS, MAX_IMAGE_PIXELS

MISSING = SkipReason("texture image missing", "surface", "the file it names is not there", outcome="left untextured")
OUTSIDE = SkipReason("texture image outside the model's folder", "surface",
                     "absolute paths, URLs, '..' and links out of the folder are not followed",
                     outcome="left untextured")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class ImageCheck:
    """Resolves and checks the images of one model file; remembers each image's verdict."""

    def __init__(self, model: Path):
        self.model = Path(model)
        self.root = self.model.parent.resolve()
        self._verdict: dict[str, str | SkipReason] = {}
        self._untextured: Counter[tuple[str, SkipReason]] = Counter()

    def apply(self, lods: dict[int, Building3D]) -> None:
        """Each textured surface's image becomes its checked absolute path, or it loses its texture."""
        for b in lods.values():
            for s in b.surfaces:
                if s.texture is None:
                    continue
                verdict = self._check(s.texture.image)
                if isinstance(verdict, SkipReason):
                    self._untextured[(s.texture.image, verdict)] += 1
                    s.texture = None
                else:
                    s.texture.image = verdict

    def report(self, rr: ReadReport) -> None:
        """One message per image left out, with the count of surfaces it leaves untextured."""
        for (image, reason), n in self._untextured.items():
            rr.skipped[reason] = rr.skipped.get(reason, 0) + n
            where = "is not there" if reason is MISSING else "is outside the file's folder, so it is not read"
            shown = "".join(c if c.isprintable() else "?" for c in image[:200]) + ("..." if len(image) > 200 else "")
            rr.messages.append(f"warning: {self.model}: texture image '{shown}' {where}; "
                               f"{n} surface{'s' if n != 1 else ''} left untextured")

    def _check(self, image: str) -> str | SkipReason:
        if image not in self._verdict:
            self._verdict[image] = self._resolve(image)
        return self._verdict[image]

    def _resolve(self, image: str) -> str | SkipReason:
        name = image.replace("\\", "/")
        if not name or "\0" in name or name.startswith("/") or _SCHEME.match(name) or ".." in name.split("/"):
            return OUTSIDE
        try:
            path = (self.root / name).resolve()
            if not path.is_relative_to(self.root):
                return OUTSIDE
            if not path.is_file():
                return MISSING
        except (OSError, RuntimeError):  # a name too long, a link loop: no file to read
            return MISSING
        _check_header(path, image, self.model)
        return str(path)


def _check_header(path: Path, image: str, model: Path) -> None:
    """Refuse an image that is not a JPEG/PNG/WebP or has too many pixels; only its header is read."""
    try:
        with Image.open(path, formats=FORMATS) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise SourceError(f"{model}: texture image '{image}' has over {MAX_IMAGE_PIXELS:,} pixels (a decompression "
                          "bomb, or a huge image); downscale it, or export without --textures") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SourceError(f"{model}: texture image '{image}' is not a readable JPEG, PNG or WebP image "
                          f"({str(exc).splitlines()[0][:120]}); fix or re-export it, or export without "
                          "--textures") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise SourceError(f"{model}: texture image '{image}' is {width:,} x {height:,} pixels, over the "
                          f"{MAX_IMAGE_PIXELS:,}-pixel bound; downscale it, or export without --textures")
