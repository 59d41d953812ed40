"""EXT_meshopt_compression for the GLB writer, with meshoptimizer's codecs (the ``meshopt`` package).

A compressed buffer view keeps its plain layout (offset, length, stride) in a *fallback*
buffer that has no bytes of its own: clients decode the compressed bytes, which live in the
GLB's binary chunk, into it. Vertex streams use the ATTRIBUTES mode (codec version 0, the
only one the extension allows), triangle indices the TRIANGLES mode.
"""
from __future__ import annotations

import meshopt
import numpy as np

EXTENSION = "EXT_meshopt_compression"


def reorder(indices: np.ndarray, *vertex_arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Triangles in vertex-cache order and vertices in first-use order: the codecs store
    small deltas between neighbours, so this order compresses best. Unused vertices go."""
    new_indices, remap, unique = meshopt.reorder_mesh(np.asarray(indices, dtype=np.uint32), triangles=True,
                                                      optsize=False)
    order = np.argsort(remap, kind="stable")[:unique]  # old vertex at each new place
    return new_indices, [np.asarray(a)[order] for a in vertex_arrays]


def encode(rows: np.ndarray, mode: str) -> bytes:
    """``rows`` (one row per vertex, or a flat index array) as the extension stores them."""
    if mode == "ATTRIBUTES":
        return meshopt.encode_gltf_buffer(np.ascontiguousarray(rows), "ATTRIBUTES", version=0)
    return meshopt.encode_gltf_buffer(np.ascontiguousarray(rows, dtype=np.uint32), "TRIANGLES")


def octahedral(normals: np.ndarray) -> np.ndarray:
    """Unit normals (n, 3) as rows of 4 bytes for the OCTAHEDRAL filter: 8-bit octahedral
    coordinates that the client turns back into normalized int8 vectors."""
    padded = np.zeros((len(normals), 4), dtype=np.float32)
    padded[:, :3] = normals
    return meshopt.encode_filter_oct(padded, 4, 8)


def view_extension(byte_offset: int, byte_length: int, stride: int, count: int, mode: str,
                   filter: str | None = None) -> dict:
    """The extension object of a buffer view whose compressed bytes sit in buffer 0."""
    ext = {"buffer": 0, "byteOffset": byte_offset, "byteLength": byte_length, "byteStride": stride, "count": count,
           "mode": mode}
    if filter is not None:
        ext["filter"] = filter
    return {EXTENSION: ext}


def fallback_buffer(byte_length: int) -> dict:
    """The buffer the compressed views decode into; without a uri, so the extension is required."""
    return {"byteLength": byte_length, "extensions": {EXTENSION: {"fallback": True}}}
