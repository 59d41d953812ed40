"""CityGML textures: a pass over the file for its app:ParameterizedTexture elements.

PLATEAU and most exporters put the appearance after the buildings (a top-level
app:appearanceMember), so the building pass cannot look it up as it goes: this pass reads
every texture first, as a table from a ring's gml:id to its image (the app:imageURI as
written) and its app:textureCoordinates. Only the texture elements reach Python; every member
is dropped once read. The first texture naming a ring wins (one theme per ring).
The table stays in memory while the file is read, so it is bounded: at most
``MAX_TEXTURED_RINGS`` rings (some 400 bytes each with their id) and
``MAX_TEXTURE_COORDINATES`` (u, v) pairs (8 bytes each), about 500 MB at worst; a PLATEAU
file of one 1 km mesh cell has a few hundred thousand textured rings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree

from geo.errors import SourceError
from pipelines.readers.citygml import _drop_read

MAX_TEXTURED_RINGS = 1_000_000
MAX_TEXTURE_COORDINATES = 10_000_000
_TAGS = ("{*}ParameterizedTexture", "{*}cityObjectMember", "{*}featureMember", "{*}member", "{*}appearanceMember")


@dataclass
class TextureTable:
    """Images as the file names them, and per ring id: (image index, (n, 2) float32 u, v)."""

    images: list[str] = field(default_factory=list)
    rings: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)

    def ring(self, ring_id: str | None) -> tuple[str, np.ndarray] | None:
        found = self.rings.get(ring_id) if ring_id else None
        return None if found is None else (self.images[found[0]], found[1])


def read_textures(path: Path) -> TextureTable:
    """The texture table of a CityGML file (empty when it has no ParameterizedTexture)."""
    table = TextureTable()
    image_index: dict[str, int] = {}
    pairs = 0
    events = etree.iterparse(str(path), events=("end",), tag=_TAGS, remove_comments=True, remove_pis=True,
                             resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        for _, elem in events:
            if not elem.tag.endswith("}ParameterizedTexture"):
                _drop_read(elem)
                continue
            image = next(((c.text or "").strip() for c in elem if c.tag.endswith("}imageURI")), "")
            if image:
                k = image_index.setdefault(image, len(image_index))
                for ring_id, uv in _coordinates(elem):
                    if ring_id not in table.rings:
                        pairs += len(uv)
                        table.rings[ring_id] = (k, uv)
                if pairs > MAX_TEXTURE_COORDINATES or len(table.rings) > MAX_TEXTURED_RINGS:
                    raise SourceError(
                        f"{path}: holds over {MAX_TEXTURED_RINGS:,} textured rings or {MAX_TEXTURE_COORDINATES:,} "
                        "texture coordinates, more than one export keeps in memory; split the file into smaller "
                        "ones (e.g. by mesh cell), or export it without --textures")
            elem.clear()
    except etree.XMLSyntaxError as exc:
        line, col = exc.position
        raise SourceError(f"{path}: broken XML at line {line}, column {col} (reading its textures); "
                          "re-export or re-download it") from None
    table.images = list(image_index)
    return table


def _coordinates(texture: etree._Element):
    """(ring id, (n, 2) u, v) of each app:textureCoordinates under one texture's targets."""
    for coords in texture.iter("{*}textureCoordinates"):
        ring_id = coords.attrib.get("ring", "").lstrip("#")
        try:
            values = np.fromstring(coords.text or "", sep=" ", dtype=np.float64)
        except ValueError:
            continue
        if ring_id and len(values) >= 6 and len(values) % 2 == 0 and np.isfinite(values).all():
            yield ring_id, values.reshape(-1, 2).astype(np.float32)

