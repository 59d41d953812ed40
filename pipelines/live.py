"""Live layers (incidents, congestion): short-lived GeoJSON items with a timestamp and an expiry.

A catalog layer of kind ``live`` is fed by authenticated POSTs and/or by a watched GeoJSON
file (the layer's ``source``, re-read whenever its modification time or size changes; the
file holds the whole current state of its items). Items live in a small SQLite database,
``<build>/live/<layer>.sqlite``, one per layer, in WAL mode so readers never wait on a writer.

Every item carries ``properties.timestamp`` and ``properties.expires``, ISO 8601 with a UTC
offset; an item without an expiry, or expiring at or before its timestamp, is refused with
a message naming the item. Reads filter out expired items; writes purge them. Properties are
screened for personal data before an item is accepted (pipelines.steps.privacy.screen_properties).
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from geo.errors import CatalogError, SourceError, StoreError
from geo.names import check_layer_name
from pipelines.catalog import Catalog
from pipelines.sqlite_wal import wal_connection
from pipelines.steps.privacy import PropertyScreen, screen_properties

LIVE_DIR = "live"
MAX_ITEMS_PER_WRITE = 10_000
MAX_ID_LENGTH = 128
_INT64 = (-(2**63), 2**63 - 1)
ORIGIN_POST = "post"
ORIGIN_FILE = "file"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    minx REAL NOT NULL, miny REAL NOT NULL, maxx REAL NOT NULL, maxy REAL NOT NULL,
    geometry TEXT NOT NULL,
    properties TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    expires TEXT NOT NULL,
    expires_at REAL NOT NULL,
    written_by TEXT,
    written_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- which database file this is: a file put in another's place restarts its version count, and the
-- tiles kept from the other must not pass for its own
INSERT OR IGNORE INTO meta VALUES ('file', lower(hex(randomblob(8))));
-- bbox reads: an R*Tree of the items' envelopes by rowid, kept by triggers (a REPLACE deletes the
-- old row through the delete trigger because connections turn recursive_triggers on)
CREATE VIRTUAL TABLE IF NOT EXISTS items_box USING rtree(id, minx, maxx, miny, maxy);
CREATE TRIGGER IF NOT EXISTS items_box_insert AFTER INSERT ON items BEGIN
    INSERT OR REPLACE INTO items_box VALUES (new.rowid, new.minx, new.maxx, new.miny, new.maxy);
END;
CREATE TRIGGER IF NOT EXISTS items_box_delete AFTER DELETE ON items BEGIN
    DELETE FROM items_box WHERE id = old.rowid;
END;
-- a database from before the R*Tree: index the items it already holds
INSERT INTO items_box SELECT rowid, minx, maxx, miny, maxy FROM items
    WHERE NOT EXISTS (SELECT 1 FROM items_box WHERE items_box.id = items.rowid);
"""


_SCHEMA_VERSION = 2  # PRAGMA user_version of a database whose tables are made


class LiveItemError(SourceError):
    """A live item (or a whole payload) that cannot be accepted; the message names the item."""


class LiveStoreError(StoreError):
    """A live layer's database file cannot be used (not a database, unreadable, locked too long)."""


@dataclass(frozen=True)
class LiveItem:
    id: str
    geometry: shapely.Geometry
    properties: dict[str, Any]
    timestamp: datetime
    expires: datetime
    screened: PropertyScreen  # what was masked or dropped from its properties before it was accepted


def screened(items: list[LiveItem]) -> PropertyScreen:
    """What screening did to all of ``items`` (property names and counts, never values)."""
    total = PropertyScreen()
    for it in items:
        total.merge(it.screened)
    return total


@dataclass(frozen=True)
class WriteResult:
    stored: int
    ids: list[str]
    purged: int


def _parse_time(value: Any, key: str, where: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise LiveItemError(f"{where}: properties.{key} is missing; every live item needs 'timestamp' and "
                            "'expires' as ISO 8601 times with an offset, e.g. 2024-07-01T09:30:00+09:00")
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise LiveItemError(f"{where}: properties.{key} {value[:40]!r} is not an ISO 8601 time "
                            "(e.g. 2024-07-01T09:30:00+09:00)") from None
    if t.tzinfo is None:
        raise LiveItemError(f"{where}: properties.{key} {value[:40]!r} has no UTC offset; add one "
                            "(Z or e.g. +09:00) so the time is unambiguous")
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is in the year 10000 in UTC
        raise LiveItemError(f"{where}: properties.{key} {value[:40]!r} is outside the years 1 to 9999 "
                            "once turned into UTC; send a time within them") from None


def _check_numbers(props: dict[str, Any], where: str) -> None:
    """Refuse numbers the answers cannot carry: NaN and infinities are not JSON, and a vector
    tile holds whole numbers of 64 bits at most. Walks without recursion (nesting may be deep)."""
    stack: list[tuple[str, Any]] = [(f"properties.{k}", v) for k, v in props.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{path}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif (isinstance(value, float) and not math.isfinite(value)) or \
                (isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]):
            raise LiveItemError(f"{where}: {path[:80]} is {str(value)[:40]}; numbers must be finite and whole "
                                "numbers within 64 bits (send larger values as strings)")


def _parse_feature(feature: Any, n: int) -> LiveItem:
    where = f"item {n}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise LiveItemError(f"{where}: not a GeoJSON Feature (an object with \"type\": \"Feature\")")
    fid = feature.get("id")
    if fid is None:
        fid = uuid.uuid4().hex
    elif isinstance(fid, bool) or not isinstance(fid, (str, int)) or not str(fid).strip() \
            or len(str(fid)) > MAX_ID_LENGTH:
        raise LiveItemError(f"{where}: id must be a non-empty string or integer of at most {MAX_ID_LENGTH} "
                            f"characters, got {str(fid)[:40]!r}")
    fid = str(fid)
    where = f"item {n} (id {fid!r})"
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise LiveItemError(f"{where}: properties must be an object")
    _check_numbers(props, where)
    ts = _parse_time(props.get("timestamp"), "timestamp", where)
    exp = _parse_time(props.get("expires"), "expires", where)
    if exp <= ts:
        raise LiveItemError(f"{where}: expires {props['expires']!r} is not after timestamp "
                            f"{props['timestamp']!r}; an item must expire after it was observed")
    if feature.get("geometry") is None:
        raise LiveItemError(f"{where}: has no geometry; live items need a location")
    try:
        geom = shape(feature["geometry"])
    except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad GeoJSON
        raise LiveItemError(f"{where}: geometry is not valid GeoJSON ({exc})") from None
    if geom.is_empty:
        raise LiveItemError(f"{where}: geometry is empty")
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in geom.bounds) or minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise LiveItemError(f"{where}: coordinates must be longitude/latitude (WGS84), got bounds "
                            f"{tuple(round(v, 3) for v in geom.bounds)}")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    # personal data never reaches the store: RRNs, mobiles and e-mails masked, identifier properties dropped
    return LiveItem(fid, geom, props, ts, exp, screen_properties(props, skip=("timestamp", "expires")))


def parse_items(payload: Any) -> list[LiveItem]:
    """Check a GeoJSON Feature or FeatureCollection of live items; raise LiveItemError on the first bad one."""
    if not isinstance(payload, dict):
        raise LiveItemError("the body must be a GeoJSON Feature or FeatureCollection (a JSON object)")
    kind = payload.get("type")
    if kind == "Feature":
        features = [payload]
    elif kind == "FeatureCollection":
        features = payload.get("features")
        if not isinstance(features, list):
            raise LiveItemError("the FeatureCollection has no 'features' list")
    else:
        raise LiveItemError(f"the body must be a GeoJSON Feature or FeatureCollection, got type {str(kind)[:40]!r}")
    if not features:
        raise LiveItemError("the FeatureCollection holds no features")
    if len(features) > MAX_ITEMS_PER_WRITE:
        raise LiveItemError(f"{len(features)} items in one write; send at most {MAX_ITEMS_PER_WRITE}")
    items = [_parse_feature(f, n) for n, f in enumerate(features, start=1)]
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise LiveItemError(f"id {item.id!r} occurs more than once in one write; ids must be unique")
        seen.add(item.id)
    return items


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def live_path(catalog: Catalog, layer: str) -> Path:
    """Where the items of live layer ``layer`` are kept (the name is checked, never a free path)."""
    return catalog.build_path / LIVE_DIR / f"{check_layer_name(layer)}.sqlite"


def live_layers(catalog: Catalog) -> list[str]:
    return [n for n, cfg in catalog.layers.items() if cfg.kind == "live"]


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


class LiveLayer:
    """The items of one live layer: write, read (unexpired only), and follow the watched file."""

    def __init__(self, catalog: Catalog, layer: str) -> None:
        check_layer_name(layer)
        cfg = catalog.layer(layer)
        if cfg.kind != "live":
            raise CatalogError(f"layer {layer!r} is a {cfg.kind} layer, not a live one; declare it with "
                               "'kind: live' in citytwin.yaml to post items to it")
        sources = catalog.source_paths(layer)
        if len(sources) > 1:
            raise CatalogError(f"live layer {layer!r} takes at most one watched GeoJSON file as source, "
                               f"got {len(sources)}")
        self.name = layer
        self.watched: Path | None = sources[0] if sources else None
        self.path = live_path(catalog, layer)
        self._lock = _lock_for(self.path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the database now at the layer's path. It is looked at on every connection,
        not once per process: a file deleted while the server runs is made again (empty), one without
        the tables (emptied in place, or put there by hand) gets them."""
        try:
            with self._wal_connection() as con:
                con.execute("PRAGMA recursive_triggers = ON")  # REPLACE must fire the R*Tree's delete trigger
                if con.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                    con.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
                yield con
        except sqlite3.DatabaseError as exc:
            raise LiveStoreError(f"{self.path}: the database of live layer {self.name!r} cannot be used ({exc}); "
                                 "if the file is not a database (e.g. replaced by hand), move it away and the layer "
                                 "starts empty, or put a good copy back") from None

    def _wal_connection(self) -> AbstractContextManager[sqlite3.Connection]:
        if not self.path.parent.is_dir():  # the live folder was removed while the server runs
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return wal_connection(self.path)

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def _rows(items: list[LiveItem], origin: str, who: str | None, now: str) -> list[tuple]:
        # geometries and their bounds in one call each (a feed writes thousands of items at a time)
        geoms = [it.geometry for it in items]
        texts, bounds = shapely.to_geojson(geoms), shapely.bounds(geoms).tolist()
        rows = []
        for it, text, box in zip(items, texts, bounds):
            props = {**it.properties, "timestamp": _iso(it.timestamp), "expires": _iso(it.expires)}
            rows.append((it.id, origin, *box, text,
                         json.dumps(props, ensure_ascii=False, default=str), _iso(it.timestamp), _iso(it.expires),
                         it.expires.timestamp(), who, now))
        return rows

    # every write that changes items bumps the layer's version, so caches of what was read know
    _BUMP = ("INSERT INTO meta VALUES ('version', '1') "
             "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")
    _INSERT = ("INSERT OR REPLACE INTO items (id, origin, minx, miny, maxx, maxy, geometry, properties, "
               "timestamp, expires, expires_at, written_by, written_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")

    def put(self, items: list[LiveItem], who: str | None) -> WriteResult:
        """Add or replace (by id) ``items``; purge what has expired."""
        now = time.time()
        rows = self._rows(items, ORIGIN_POST, who, _iso(datetime.fromtimestamp(now, timezone.utc)))
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(self._INSERT, rows)
            purged = con.execute("DELETE FROM items WHERE expires_at <= ?", (now,)).rowcount
            con.execute(self._BUMP)
            con.execute("COMMIT")
        return WriteResult(stored=len(rows), ids=[it.id for it in items], purged=purged)

    def replace_origin(self, origin: str, items: list[LiveItem], who: str) -> WriteResult:
        """Make ``items`` the whole set of items from ``origin`` (a feed's latest state), in one
        transaction: readers see the old set or the new one, never a mix."""
        now = time.time()
        rows = self._rows(items, origin, who, _iso(datetime.fromtimestamp(now, timezone.utc)))
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM items WHERE origin = ?", (origin,))
            con.executemany(self._INSERT, rows)
            purged = con.execute("DELETE FROM items WHERE expires_at <= ?", (now,)).rowcount
            con.execute(self._BUMP)
            con.execute("COMMIT")
        return WriteResult(stored=len(rows), ids=[it.id for it in items], purged=purged)

    def _file_stamp(self) -> str | None:
        try:
            st = os.stat(self.watched)
        except FileNotFoundError:
            return None
        return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"

    def refresh(self) -> dict | None:
        """Re-read the watched file if it changed since the last read; return what happened, else None.

        The file is the whole current state of its items: they replace every earlier item from
        the file (posted items stay). A file that fails to parse changes nothing; the returned
        record says why, for the audit log.
        """
        if self.watched is None:
            return None
        stamp = self._file_stamp()
        with self._lock, self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'file_stamp'").fetchone()
            if stamp is None or (row is not None and row[0] == stamp):
                return None
            con.execute("BEGIN IMMEDIATE")
            try:
                try:
                    payload = json.loads(self.watched.read_text(encoding="utf-8"))
                    items = parse_items(payload) if payload.get("features") != [] else []
                except (ValueError, AttributeError, RecursionError, LiveItemError) as exc:
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('file_stamp', ?)", (stamp,))
                    con.execute("COMMIT")
                    return {"file": str(self.watched), "error": f"{self.watched}: {exc}; kept the previous items"}
                now = time.time()
                con.execute("DELETE FROM items WHERE origin = ?", (ORIGIN_FILE,))
                con.executemany(self._INSERT, self._rows(items, ORIGIN_FILE, f"file:{self.watched.name}",
                                                         _iso(datetime.fromtimestamp(now, timezone.utc))))
                purged = con.execute("DELETE FROM items WHERE expires_at <= ?", (now,)).rowcount
                con.execute("INSERT OR REPLACE INTO meta VALUES ('file_stamp', ?)", (stamp,))
                con.execute(self._BUMP)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return {"file": str(self.watched), "stored": len(items), "ids": [it.id for it in items][:50],
                "purged": purged, "privacy": screened(items).as_dict()}

    # -- reads ----------------------------------------------------------------------------
    def version(self) -> str:
        """Changes with every write of items, and with the database file; read it before the items it
        stands for."""
        with self._connect() as con:
            meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('file', 'version')").fetchall())
        return f"{meta.get('file', '')}:{meta.get('version', '0')}"

    def columns(self, now: float) -> tuple[list[str], list[str], list[dict], list[float]]:
        """Unexpired items as columns, in the order features() gives them: ids, GeoJSON geometry
        texts, property dicts and expiry times (what a live tile snapshot is made from)."""
        with self._connect() as con:
            rows = con.execute("SELECT id, geometry, properties, expires_at FROM items WHERE expires_at > ? "
                               "ORDER BY timestamp DESC, id", (now,)).fetchall()
        return ([r[0] for r in rows], [r[1] for r in rows], [json.loads(r[2]) for r in rows],
                [r[3] for r in rows])

    def features(self, bbox: tuple[float, float, float, float] | None = None, limit: int | None = None,
                 now: float | None = None) -> list[dict]:
        """Unexpired items as GeoJSON Features (bbox in lon/lat: envelope overlap, then exact test)."""
        now = time.time() if now is None else now
        sql = "SELECT id, geometry, properties, expires_at FROM items WHERE expires_at > ?"
        params: list[Any] = [now]
        if bbox is not None:
            # candidates from the R*Tree (its 32-bit boxes are rounded outwards), then the exact envelopes
            overlap = "maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?"
            sql += f" AND rowid IN (SELECT id FROM items_box WHERE {overlap}) AND {overlap}"
            params += [bbox[0], bbox[2], bbox[1], bbox[3]] * 2
        sql += " ORDER BY timestamp DESC, id"
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        box = shapely.box(*bbox) if bbox is not None else None
        out = []
        for fid, geom, props, _exp in rows:
            g = json.loads(geom)
            if box is not None and not shapely.intersects(shape(g), box):
                continue
            out.append({"type": "Feature", "id": fid, "geometry": g, "properties": json.loads(props)})
            if limit is not None and len(out) >= limit:
                break
        return out
