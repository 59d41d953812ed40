"""GLB writer: one mesh per tile, one feature id per building, metadata in a property table.

Extensions written here (the writer is ours; no library covers the metadata ones):
- EXT_mesh_features: a ``_FEATURE_ID_0`` vertex attribute, one id per building;
- EXT_structural_metadata: a ``building`` class and one property table row per feature id;
- KHR_mesh_quantization: int16 positions and normals (about 4x smaller than float32),
  de-quantized by the node's translation and uniform scale;
- EXT_meshopt_compression (``compress=True``, new tilesets' default): vertex and index streams
  through meshoptimizer's codecs, normals 8-bit octahedral: about 4x smaller geometry again on
  LOD1 and LOD2 buildings (``tiles/threed/meshopt.py``).
With ``batch_id=True`` the feature ids go into ``_BATCHID`` for 3D Tiles 1.0 b3dm instead.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from geo.rows import column_max, column_min
from tiles.threed import meshopt

FLOAT, SHORT, USHORT, UINT, BYTE = 5126, 5122, 5123, 5125, 5120
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
NO_DATA = {"FLOAT32": -3.4028234663852886e38, "INT32": -2147483648, "STRING": ""}


@dataclass
class TileMesh:
    """Triangles of one tile in its local frame (ENU metres, z up)."""

    positions: np.ndarray  # (n, 3) float64
    normals: np.ndarray  # (n, 3) float, unit length
    feature_ids: np.ndarray  # (n,) int, 0..feature_count-1
    indices: np.ndarray  # (m,) uint32, triangles
    feature_count: int
    uv: np.ndarray | None = None  # (n, 2) each vertex's (u, v) in its source image (v up), when textured
    image: np.ndarray | None = None  # (n,) each vertex's image (the maker's list), -1 untextured
    texture: TileTexture | None = None  # the atlas the textured vertices sample (tiles.threed.atlas)


@dataclass
class TileTexture:
    """One image for a tile's textured surfaces: (u, v) per vertex in glTF's convention (origin
    top left) and the encoded image."""

    uv: np.ndarray  # (n, 2) in [0, 1]
    textured: np.ndarray  # (n,) bool: the vertex samples the image (else today's plain material)
    data: bytes
    mime_type: str


class _Buffer:
    """Buffer 0 (the GLB's binary chunk) and, with ``compress``, the meshopt fallback buffer 1."""

    def __init__(self, compress: bool = False):
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.compress = compress
        self.fallback_size = 0

    def _append(self, data: bytes) -> int:
        pad = (-self.size) % 8  # EXT_structural_metadata wants 8-byte aligned views
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        offset = self.size
        self.chunks.append(data)
        self.size += len(data)
        return offset

    def add(self, data: bytes, *, target: int | None = None, stride: int | None = None) -> int:
        view = {"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        if stride is not None:
            view["byteStride"] = stride
        self.views.append(view)
        return len(self.views) - 1

    def add_stream(self, rows: np.ndarray, *, target: int, stride: int | None = None, filter: str | None = None) -> int:
        """Vertex rows or triangle indices: plain, or meshopt-compressed when ``compress``
        (``filter`` names the meshopt filter ``rows`` went through)."""
        rows = np.ascontiguousarray(rows)
        if not self.compress:
            return self.add(rows.tobytes(), target=target, stride=stride)
        indices = target == ELEMENT_ARRAY_BUFFER
        encoded = meshopt.encode(rows, "TRIANGLES" if indices else "ATTRIBUTES")
        self.fallback_size += (-self.fallback_size) % 8
        view = {"buffer": 1, "byteOffset": self.fallback_size, "byteLength": rows.nbytes, "target": target}
        if stride is not None:
            view["byteStride"] = stride
        view["extensions"] = meshopt.view_extension(
            self._append(encoded), len(encoded), rows.itemsize if indices else rows.nbytes // len(rows),
            rows.size if indices else len(rows), "TRIANGLES" if indices else "ATTRIBUTES", filter)
        self.fallback_size += rows.nbytes
        self.views.append(view)
        return len(self.views) - 1

    def buffers(self, blob: bytes) -> list[dict]:
        main = [{"byteLength": len(blob)}]
        return main + [meshopt.fallback_buffer(self.fallback_size)] if self.fallback_size else main

    def bytes(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\0" * ((-len(blob)) % 8)


def _y_up(v: np.ndarray) -> np.ndarray:
    """ENU (x east, y north, z up) to glTF's y-up frame: (east, up, -north)."""
    return np.column_stack([v[:, 0], v[:, 2], -v[:, 1]])


def _property_table(buf: _Buffer, count: int, properties: dict[str, tuple[str, list]]) -> tuple[dict, dict]:
    """Schema class properties and the property table for ``properties`` name -> (type, values)."""
    schema, table = {}, {}
    for name, (ptype, values) in properties.items():
        schema[name] = {"type": "STRING"} if ptype == "STRING" else {"type": "SCALAR", "componentType": ptype}
        if len(values) != count:
            raise ValueError(f"property {name!r} has {len(values)} values for {count} features")
        if ptype == "STRING":
            encoded = [("" if v is None else str(v)).encode("utf-8") for v in values]
            offsets = np.zeros(count + 1, dtype=np.uint32)
            offsets[1:] = np.cumsum([len(e) for e in encoded])
            if not any(encoded):
                continue  # no text at all: a buffer view may not be empty, so the optional property is left out
            values_view = buf.add(b"".join(encoded))
            offsets_view = buf.add(offsets.tobytes())
            schema[name] = {"type": "STRING", "noData": NO_DATA["STRING"]}
            table[name] = {"values": values_view, "stringOffsets": offsets_view, "stringOffsetType": "UINT32"}
        elif ptype in ("FLOAT32", "INT32"):
            dtype = np.float32 if ptype == "FLOAT32" else np.int32
            arr = np.array([NO_DATA[ptype] if v is None or (isinstance(v, float) and np.isnan(v)) else v
                            for v in values], dtype=np.float64)
            schema[name] = {"type": "SCALAR", "componentType": ptype, "noData": NO_DATA[ptype]}
            table[name] = {"values": buf.add(arr.astype(dtype).tobytes())}
        else:
            raise ValueError(f"unsupported property type {ptype}")
    return schema, table


def _texcoord_accessor(buf: _Buffer, accessors: list[dict], uv: np.ndarray, quantize: bool) -> int:
    """TEXCOORD_0: normalized unsigned shorts when quantized (KHR_mesh_quantization), else floats."""
    if quantize:
        q = np.round(np.clip(uv, 0.0, 1.0) * 65535).astype(np.uint16)
        accessors.append({"bufferView": buf.add_stream(q, target=ARRAY_BUFFER, stride=4), "componentType": USHORT,
                          "normalized": True, "count": len(uv), "type": "VEC2"})
    else:
        accessors.append({"bufferView": buf.add(uv.astype(np.float32).tobytes(), target=ARRAY_BUFFER),
                          "componentType": FLOAT, "count": len(uv), "type": "VEC2"})
    return len(accessors) - 1


def _add_texture(gltf: dict, buf: _Buffer, tex: TileTexture) -> None:
    """Material 1: the tile's atlas, clamped at its edges, mipmapped."""
    gltf["materials"].append({"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                                       "roughnessFactor": 0.9}})
    gltf["textures"] = [{"sampler": 0, "source": 0}]
    gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
    gltf["images"] = [{"bufferView": buf.add(tex.data), "mimeType": tex.mime_type}]


def write_glb(mesh: TileMesh, properties: dict[str, tuple[str, list]], *, quantize: bool = True,
              batch_id: bool = False, compress: bool = False) -> bytes:
    """The GLB bytes of one tile; ``compress`` (with ``quantize``) adds EXT_meshopt_compression."""
    compress = compress and quantize
    buf = _Buffer(compress)
    accessors: list[dict] = []
    idx, positions, normals, feature_ids = mesh.indices, mesh.positions, mesh.normals, mesh.feature_ids
    tex = mesh.texture
    uv, textured = (tex.uv, tex.textured) if tex is not None else (None, None)
    if compress and tex is not None:
        idx, (positions, normals, feature_ids, uv, textured) = meshopt.reorder(
            idx, positions, normals, feature_ids, uv, textured)
    elif compress:
        idx, (positions, normals, feature_ids) = meshopt.reorder(idx, positions, normals, feature_ids)
    n = len(positions)
    pos = _y_up(np.asarray(positions, dtype=np.float64))
    nrm = _y_up(np.asarray(normals, dtype=np.float64))
    node: dict = {"mesh": 0}

    lo, hi = column_min(pos), column_max(pos)
    if quantize:
        center = (lo + hi) / 2
        scale = float(max((hi - lo).max() / 2, 1e-6))
        q = np.round((pos - center) / scale * 32767).clip(-32767, 32767).astype(np.int16)
        packed = np.zeros((n, 4), dtype=np.int16)
        packed[:, :3] = q
        accessors.append({"bufferView": buf.add_stream(packed, target=ARRAY_BUFFER, stride=8),
                          "componentType": SHORT, "normalized": True, "count": n, "type": "VEC3",
                          "min": column_min(q).tolist(), "max": column_max(q).tolist()})
        node.update(translation=center.tolist(), scale=[scale, scale, scale])
        if compress:  # 8-bit octahedral normals: a quarter of the bytes, well under a degree off
            octa = meshopt.octahedral(nrm)
            accessors.append({"bufferView": buf.add_stream(octa, target=ARRAY_BUFFER, stride=4, filter="OCTAHEDRAL"),
                              "componentType": BYTE, "normalized": True, "count": n, "type": "VEC3"})
        else:
            qn = np.round(nrm * 32767).clip(-32767, 32767).astype(np.int16)
            packed_n = np.zeros((n, 4), dtype=np.int16)
            packed_n[:, :3] = qn
            accessors.append({"bufferView": buf.add_stream(packed_n, target=ARRAY_BUFFER, stride=8),
                              "componentType": SHORT, "normalized": True, "count": n, "type": "VEC3"})
    else:
        p32 = pos.astype(np.float32)
        accessors.append({"bufferView": buf.add(p32.tobytes(), target=ARRAY_BUFFER), "componentType": FLOAT,
                          "count": n, "type": "VEC3", "min": column_min(p32).tolist(), "max": column_max(p32).tolist()})
        accessors.append({"bufferView": buf.add(nrm.astype(np.float32).tobytes(), target=ARRAY_BUFFER),
                          "componentType": FLOAT, "count": n, "type": "VEC3"})

    if mesh.feature_count <= 65535:
        fid = np.zeros((n, 2), dtype=np.uint16)
        fid[:, 0] = feature_ids
        fid_accessor = {"bufferView": buf.add_stream(fid, target=ARRAY_BUFFER, stride=4),
                        "componentType": USHORT, "count": n, "type": "SCALAR"}
    else:
        fid_accessor = {"bufferView": buf.add_stream(np.asarray(feature_ids, dtype=np.float32).reshape(-1, 1),
                                                     target=ARRAY_BUFFER),
                        "componentType": FLOAT, "count": n, "type": "SCALAR"}
    accessors.append(fid_accessor)

    fid_name = "_BATCHID" if batch_id else "_FEATURE_ID_0"
    attributes = {"POSITION": 0, "NORMAL": 1, fid_name: 2}
    idx = np.asarray(idx)
    groups = [(idx, 0)]  # (triangles, material)
    if tex is not None:  # plain and textured triangles: one primitive each, sharing the vertices
        on_image = np.asarray(textured, dtype=bool)[idx.reshape(-1, 3)[:, 0]]
        tris = idx.reshape(-1, 3)
        groups = [(tris[m].ravel(), material) for m, material in ((~on_image, 0), (on_image, 1)) if m.any()]
        attributes["TEXCOORD_0"] = _texcoord_accessor(buf, accessors, np.asarray(uv, dtype=np.float64), quantize)
    primitives = []
    for tri_idx, material in groups:
        idx_rows, idx_type = ((tri_idx.astype(np.uint16), USHORT) if n <= 65535
                              else (tri_idx.astype(np.uint32), UINT))
        accessors.append({"bufferView": buf.add_stream(idx_rows, target=ELEMENT_ARRAY_BUFFER),
                          "componentType": idx_type, "count": int(len(tri_idx)), "type": "SCALAR"})
        primitives.append({"attributes": attributes, "indices": len(accessors) - 1, "material": material, "mode": 4})

    gltf: dict = {
        "asset": {"version": "2.0", "generator": "citytwin"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [node],
        "meshes": [{"primitives": primitives}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.86, 0.84, 0.80, 1.0],
                                                "metallicFactor": 0.0, "roughnessFactor": 0.9}}],
        "accessors": accessors,
    }
    if tex is not None:
        _add_texture(gltf, buf, tex)
    used = []
    if quantize:
        used.append("KHR_mesh_quantization")
        gltf["extensionsRequired"] = ["KHR_mesh_quantization"]
    if compress:
        used.append(meshopt.EXTENSION)
        gltf["extensionsRequired"].append(meshopt.EXTENSION)
    if not batch_id:
        schema, table = _property_table(buf, mesh.feature_count, properties)
        for primitive in primitives:
            primitive["extensions"] = {"EXT_mesh_features": {"featureIds": [
                {"featureCount": mesh.feature_count, "attribute": 0, "propertyTable": 0}]}}
        gltf["extensions"] = {"EXT_structural_metadata": {
            "schema": {"id": "citytwin", "classes": {"building": {"properties": schema}}},
            "propertyTables": [{"class": "building", "count": mesh.feature_count, "properties": table}],
        }}
        used += ["EXT_mesh_features", "EXT_structural_metadata"]
    if used:
        gltf["extensionsUsed"] = used
    blob = buf.bytes()
    gltf["bufferViews"] = buf.views
    gltf["buffers"] = buf.buffers(blob)
    js = json.dumps(gltf, separators=(",", ":")).encode()
    # pad so the BIN chunk's data starts, and the file ends, on 8-byte boundaries (b3dm needs both)
    js += b" " * ((4 - len(js)) % 8)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return b"".join([
        struct.pack("<4sII", b"glTF", 2, total),
        struct.pack("<I4s", len(js), b"JSON"), js,
        struct.pack("<I4s", len(blob), b"BIN\0"), blob,
    ])
