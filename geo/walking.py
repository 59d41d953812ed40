"""Walking routes on street centre lines: a noded street graph and networkx shortest paths.

Lines are noded where they cross (shapely union), each piece between two nodes becomes an
edge weighted by its length in metres, and keeps the name of the street it came from. A
route starts and ends at the nearest point of the nearest edge (not at a node), and is cut
into legs wherever the street changes or the walk turns; each leg becomes one instruction.
Coordinates are in a metric frame (the caller projects lon/lat in and out).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
from shapely.ops import substring

_SRC, _DST = -1, -2
#: A leg ends where the heading changes by at least this much, even on the same street.
TURN_DEG = 50.0


class NoRoute(ValueError):
    """The two places are on parts of the street network that do not connect."""


@dataclass(frozen=True)
class Leg:
    street: int  # index into the graph's street list (-1: unnamed)
    coords: np.ndarray  # (k, 2) metres, in walking order
    length_m: float

    @property
    def start_bearing(self) -> float:
        return _bearing(self.coords[0], _away(self.coords, 0))

    @property
    def end_bearing(self) -> float:
        return _bearing(_away(self.coords, -1), self.coords[-1])


def _away(coords: np.ndarray, end: int) -> np.ndarray:
    """The vertex next to ``coords[end]`` that is not on top of it (for a stable direction)."""
    seq = coords[1:] if end == 0 else coords[-2::-1]
    ref = coords[end]
    for p in seq:
        if np.hypot(*(p - ref)) > 0.5:
            return p
    return seq[-1] if len(seq) else ref


def _bearing(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


class StreetGraph:
    """The noded street network; ``route`` is safe to call from several threads."""

    def __init__(self, lines: np.ndarray, street_of_line: np.ndarray):
        lines = np.asarray(lines, dtype=object)
        noded = shapely.get_parts(shapely.union_all(lines))
        noded = noded[shapely.get_type_id(noded) == 1]  # LineStrings only
        noded = noded[shapely.length(noded) > 0]
        # Each noded piece takes the street of the original line nearest its middle.
        mids = shapely.line_interpolate_point(noded, 0.5, normalized=True)
        src = shapely.STRtree(lines).query_nearest(mids, all_matches=False)[1]
        self.street_of_edge = np.asarray(street_of_line)[src]
        self.edges = noded
        self.tree = shapely.STRtree(noded)
        ends = np.vstack([shapely.get_coordinates(shapely.get_point(noded, 0)),
                          shapely.get_coordinates(shapely.get_point(noded, -1))])
        keys = np.round(ends, 2)  # centimetres: the same crossing is the same node
        _, node = np.unique(keys, axis=0, return_inverse=True)
        node = node.reshape(-1)
        m = len(noded)
        self.edge_u, self.edge_v = node[:m], node[m:]
        self.graph = nx.Graph()
        for e, (u, v, w) in enumerate(zip(self.edge_u, self.edge_v, shapely.length(noded))):
            if u == v:
                continue
            old = self.graph.get_edge_data(u, v)
            if old is None or old["weight"] > w:
                self.graph.add_edge(int(u), int(v), weight=float(w), edge=e)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.graph.number_of_edges()

    def _snap(self, xy: tuple[float, float]) -> tuple[int, float, shapely.LineString]:
        pt = shapely.Point(xy)
        e = int(self.tree.query_nearest(pt, all_matches=False)[0])
        line = self.edges[e]
        return e, float(line.project(pt)), line

    def _piece(self, a: int, b: int, data: dict, snaps: dict) -> tuple[np.ndarray, int]:
        """Coordinates of the graph edge a->b in walking order, and its street."""
        if a in snaps or b in snaps:  # a part of a snapped edge
            if a in snaps and b in snaps:
                e, s1, line = snaps[a]
                s2 = snaps[b][1]
            elif a in snaps:
                e, s1, line = snaps[a]
                s2 = 0.0 if b == self.edge_u[e] else line.length
            else:
                e, s2, line = snaps[b]
                s1 = 0.0 if a == self.edge_u[e] else line.length
            piece = substring(line, min(s1, s2), max(s1, s2))
            coords = shapely.get_coordinates(piece)
            if s1 > s2:
                coords = coords[::-1]
            return coords, int(self.street_of_edge[e])
        e = data["edge"]
        coords = shapely.get_coordinates(self.edges[e])
        if self.edge_u[e] != a:
            coords = coords[::-1]
        return coords, int(self.street_of_edge[e])

    def route(self, a_xy: tuple[float, float], b_xy: tuple[float, float]) -> list[Leg]:
        """Legs of the shortest walk between the street points nearest ``a_xy`` and ``b_xy``."""
        snaps = {_SRC: self._snap(a_xy), _DST: self._snap(b_xy)}
        with self._lock:
            added = []
            try:
                for node, (e, s, line) in snaps.items():
                    for end, w in ((int(self.edge_u[e]), s), (int(self.edge_v[e]), line.length - s)):
                        self.graph.add_edge(node, end, weight=w, edge=-1)
                    added.append(node)
                if snaps[_SRC][0] == snaps[_DST][0]:  # both on one edge: the direct piece too
                    self.graph.add_edge(_SRC, _DST, weight=abs(snaps[_SRC][1] - snaps[_DST][1]), edge=-1)
                try:
                    path = nx.shortest_path(self.graph, _SRC, _DST, weight="weight")
                except nx.NetworkXNoPath:
                    raise NoRoute("the two places are on street networks that do not connect") from None
                pieces = [self._piece(a, b, self.graph.edges[a, b], snaps) for a, b in zip(path[:-1], path[1:])]
            finally:
                for node in added:
                    self.graph.remove_node(node)
        return _legs(pieces)


def _legs(pieces: list[tuple[np.ndarray, int]]) -> list[Leg]:
    """Join pieces into legs: a new leg where the street changes or the walk turns sharply."""
    legs: list[list] = []
    for coords, street in pieces:
        if len(coords) < 2 or float(np.hypot(*np.diff(coords, axis=0).T).sum()) == 0.0:
            continue
        if legs:
            prev = np.vstack(legs[-1][0])
            turn = abs((_bearing(coords[0], _away(coords, 0)) - _bearing(_away(prev, -1), prev[-1]) + 180) % 360 - 180)
            if street == legs[-1][1] and turn < TURN_DEG:
                legs[-1][0].append(coords[1:])
                continue
        legs.append([[coords], street])
    out = []
    for parts, street in legs:
        coords = np.vstack(parts)
        out.append(Leg(street, coords, float(np.hypot(*np.diff(coords, axis=0).T).sum())))
    return out
