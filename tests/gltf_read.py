"""An independent reader for the GLB and b3dm files our tilesets hold (tests only)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import meshopt
import numpy as np

COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def split_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON"
    gltf = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0"
    return gltf, data[28 + jlen:28 + jlen + blen]


def read_b3dm(data: bytes) -> tuple[dict, dict, bytes]:
    magic, version, length, ftj, ftb, btj, btb = struct.unpack_from("<4s6I", data, 0)
    assert magic == b"b3dm" and version == 1 and length == len(data)
    feature = json.loads(data[28:28 + ftj])
    batch = json.loads(data[28 + ftj + ftb:28 + ftj + ftb + btj])
    return feature, batch, data[28 + ftj + ftb + btj + btb:]


def view_bytes(gltf: dict, blob: bytes, index: int) -> tuple[bytes, int]:
    """The bytes a buffer view reads from, and where in them it starts: EXT_meshopt_compression
    views are decoded (by meshoptimizer's own decoder) from the bytes in the GLB's buffer."""
    view = gltf["bufferViews"][index]
    ext = view.get("extensions", {}).get("EXT_meshopt_compression")
    if ext is None:
        assert view["buffer"] == 0
        return blob, view.get("byteOffset", 0)
    assert gltf["buffers"][view["buffer"]]["extensions"]["EXT_meshopt_compression"]["fallback"] is True
    assert ext["buffer"] == 0 and "uri" not in gltf["buffers"][view["buffer"]]
    data = blob[ext.get("byteOffset", 0):ext.get("byteOffset", 0) + ext["byteLength"]]
    rows = meshopt.decode_gltf_buffer(data, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter"))
    decoded = np.ascontiguousarray(rows).tobytes()
    assert len(decoded) == view["byteLength"] == ext["count"] * ext["byteStride"]
    return decoded, 0


def accessor(gltf: dict, blob: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(COMPONENT[acc["componentType"]])
    width = WIDTH[acc["type"]]
    stride = view.get("byteStride", dtype.itemsize * width)
    blob, start = view_bytes(gltf, blob, acc["bufferView"])
    start += acc.get("byteOffset", 0)
    rows = np.ndarray((acc["count"], width), dtype=dtype, buffer=blob, offset=start, strides=(stride, dtype.itemsize))
    out = rows.astype(np.float64)
    if acc.get("normalized"):
        out = np.maximum(out / np.iinfo(dtype).max, -1.0)
    return out if width > 1 else out[:, 0]


def mesh_local_enu(gltf: dict, blob: bytes) -> dict:
    """Positions/normals in the tile's local ENU frame (node transform applied, y-up undone)."""
    prim = gltf["meshes"][0]["primitives"][0]
    node = gltf["nodes"][0]
    pos = accessor(gltf, blob, prim["attributes"]["POSITION"])
    nrm = accessor(gltf, blob, prim["attributes"]["NORMAL"])
    pos = pos * np.array(node.get("scale", [1, 1, 1])) + np.array(node.get("translation", [0, 0, 0]))
    to_enu = lambda v: np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])  # noqa: E731  (x, y, z) y-up -> (e, n, u)
    fid_name = "_FEATURE_ID_0" if "_FEATURE_ID_0" in prim["attributes"] else "_BATCHID"
    return {
        "positions": to_enu(pos),
        "normals": to_enu(nrm),
        "feature_ids": accessor(gltf, blob, prim["attributes"][fid_name]).astype(int),
        "indices": accessor(gltf, blob, prim["indices"]).astype(int).reshape(-1, 3),
    }


def property_strings(gltf: dict, blob: bytes, name: str) -> list[str]:
    table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    prop = table["properties"][name]
    values = gltf["bufferViews"][prop["values"]]
    offsets_view = gltf["bufferViews"][prop["stringOffsets"]]
    offsets = np.frombuffer(blob, dtype=np.uint32, count=table["count"] + 1, offset=offsets_view["byteOffset"])
    raw = blob[values["byteOffset"]:values["byteOffset"] + values["byteLength"]]
    return [raw[offsets[i]:offsets[i + 1]].decode() for i in range(table["count"])]


def iter_content(tileset_dir: Path):
    """(tile json, content path, column-major transform) for every tile with content."""
    ts = json.loads((tileset_dir / "tileset.json").read_text())
    stack = [(ts["root"], np.eye(4))]
    while stack:
        tile, parent = stack.pop()
        m = parent @ (np.array(tile["transform"]).reshape(4, 4).T if "transform" in tile else np.eye(4))
        if "content" in tile:
            yield tile, tileset_dir / tile["content"]["uri"], m
        for c in tile.get("children", []):
            stack.append((c, m))
