"""``citytwin privacy-scan``: look for personal data in anything that was published.

Targets:
    *.gpkg          every text (and number) value of every layer, plus layer and field names
    *.pmtiles       every tile of the archive, decoded (MVT), every feature property; and the metadata
    live/*.sqlite   a live layer's item store: every stored item's id and properties (expired
                    ones too, until a write purges them)
    http(s)://...   an OGC API Features server: /collections, then every collection's items
                    paged through as GeoJSON (every property and id), and its vector tiles at the
                    deepest zoom whose tiles over the collection's extent stay under a cap

The detectors are those that scrub records before publishing (pipelines.steps.privacy):
resident registration numbers (next to a label whatever their date, else pattern + real
date; the check digit is reported), personal mobile numbers and e-mails, on NFKC-normalised
text. A GeoPackage column that scrubbing would have withheld whole (its name marks a
personal identifier, or most of its values are RRNs, mobile numbers or e-mails) is a hit
of its own, and so is such a property of the features of a tile layer or a collection (once
per tile layer or collection, counted over every feature seen). A hit is reported with
where it is and a masked value (for a column: why it is one): the full value is never printed.
"""
from __future__ import annotations

import gzip
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geo.errors import SourceError
from pipelines.steps.privacy import DETECTORS, ColumnTally, find_personal, leaking_column, normalise

EXIT_LEAK = 3
MAX_TILES_PER_COLLECTION = 256
PAGE_LIMIT = 500
_MAX_PAGES = 10_000
_TIMEOUT = 30


@dataclass(frozen=True)
class Hit:
    where: str  # file/layer/feature, or URL
    field: str
    kind: str  # rrn | mobile | email | identifier column
    masked: str  # the masked value; for a column, why it is one
    verified: bool = True  # rrn: the check digit holds


@dataclass
class ScanReport:
    target: str
    values: int = 0  # text values looked at
    items: Counter = field(default_factory=Counter)  # what was scanned: layers, features, tiles, pages
    hits: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    columns: dict[tuple[str, str], ColumnTally] = field(default_factory=dict)  # (tile layer or collection, property)

    def summary(self, max_lines: int = 50) -> str:
        what = ", ".join(f"{n} {k}" for k, n in self.items.items())
        lines = [f"privacy-scan {self.target}: {what}; {self.values} values; "
                 + (f"{len(self.hits)} LEAK(S) found" if self.hits else "no personal data found")]
        for h in self.hits[:max_lines]:
            check = "" if h.kind != "rrn" else (" (check digit ok)" if h.verified else " (check digit fails)")
            lines.append(f"  {h.kind}{check}: {h.where} field '{h.field}': {h.masked}")
        if len(self.hits) > max_lines:
            lines.append(f"  ... and {len(self.hits) - max_lines} more")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def mask(value: str) -> str:
    """Keep the first two characters of a match, star the rest: never the whole value."""
    return value[:2] + re.sub(r"[^\s\-@.]", "*", value[2:])


def _check(report: ScanReport, where: str, name: str, value, detect: tuple[str, ...]) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (dict, list, tuple)):
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            _check(report, where, f"{name}.{k}", v, detect)
        return
    if isinstance(value, float) and not math.isfinite(value):
        return
    text = normalise(value if isinstance(value, str) else str(value))
    report.values += 1
    for f in find_personal(text, detect):
        report.hits.append(Hit(where, name, f.kind, mask(text[f.start:f.end]), f.verified))


def _check_property(report: ScanReport, where: str, container: str, key: str, value, detect: tuple[str, ...]) -> None:
    """A feature property: its name and value, and the value counted for its column (see ``_column_hits``)."""
    _check(report, where, "(field name)", key, detect)
    _check(report, where, key, value, detect)
    report.columns.setdefault((container, key), ColumnTally(detect)).add(value)


def _column_hits(report: ScanReport) -> None:
    """One hit per tile layer or collection property that scrubbing would have withheld whole."""
    for (container, key), tally in report.columns.items():
        why = tally.leak(key)
        if why:
            report.hits.append(Hit(container, key, "identifier column", why))


# --- GeoPackage ------------------------------------------------------------------------------

def scan_geopackage(path: Path, detect: tuple[str, ...] = DETECTORS) -> ScanReport:
    import pyogrio

    report = ScanReport(target=str(path))
    try:
        layers = [str(n) for n, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # GDAL: not a GeoPackage / corrupt
        raise SourceError(f"{path}: cannot be read as a GeoPackage ({exc})") from None
    for layer in layers:
        report.items["layers"] += 1
        _check(report, f"{path.name}", "(layer name)", layer, detect)
        df = pyogrio.read_dataframe(path, layer=layer, read_geometry=False, fid_as_index=True)
        ids = df["id"].astype(str).tolist() if "id" in df.columns else [f"fid {i}" for i in df.index]
        for col in df.columns:
            _check(report, f"{path.name}/{layer}", "(field name)", col, detect)
            values = df[col].tolist()
            why = leaking_column(str(col), values, detect)
            if why:
                report.hits.append(Hit(f"{path.name}/{layer}", str(col), "identifier column", why))
            for fid, v in zip(ids, values):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                _check(report, f"{path.name}/{layer}/{fid}", str(col), v, detect)
        report.items["features"] += len(df)
    return report


# --- a live layer's item store --------------------------------------------------------------

def scan_live(path: Path, detect: tuple[str, ...] = DETECTORS) -> ScanReport:
    """The items of a live layer (pipelines.live), read from its SQLite file without writing to it."""
    import sqlite3

    report = ScanReport(target=str(path))
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id, properties FROM items").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise SourceError(f"{path}: not a live layer's item store ({exc})") from None
    report.items["live items"] += len(rows)
    for fid, props in rows:
        where = f"{path.name}/{fid}"
        _check(report, where, "id", fid, detect)
        try:
            values = json.loads(props)
        except ValueError:
            report.notes.append(f"{where}: properties are not JSON; not scanned")
            continue
        for k, v in (values if isinstance(values, dict) else {}).items():
            _check_property(report, where, path.name, str(k), v, detect)
    _column_hits(report)
    return report


# --- PMTiles ---------------------------------------------------------------------------------

def _mvt_values(report: ScanReport, container: str, where: str, data: bytes, detect: tuple[str, ...]) -> None:
    import mapbox_vector_tile

    tile = mapbox_vector_tile.decode(data)
    for layer, content in tile.items():
        _check(report, where, "(layer name)", layer, detect)
        for feat in content.get("features", []):
            report.items["tile features"] += 1
            props = feat.get("properties") or {}
            fid = props.get("id", feat.get("id"))
            at = f"{where}/{layer}/{fid}"
            for k, v in props.items():
                _check_property(report, at, f"{container}/{layer}", str(k), v, detect)


def _maybe_gunzip(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def scan_pmtiles(path: Path, detect: tuple[str, ...] = DETECTORS) -> ScanReport:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    report = ScanReport(target=str(path))
    with open(path, "rb") as f:
        try:
            src = MmapSource(f)
        except ValueError:
            raise SourceError(f"{path}: empty file, not a PMTiles archive") from None
        try:
            meta = Reader(src).metadata()
        except Exception as exc:
            raise SourceError(f"{path}: not a PMTiles v3 archive ({exc})") from None
        _check(report, f"{path.name} (metadata)", "metadata", meta, detect)
        for (z, x, y), data in all_tiles(src):
            report.items["tiles"] += 1
            _mvt_values(report, path.name, f"{path.name}/{z}/{x}/{y}", _maybe_gunzip(bytes(data)), detect)
    _column_hits(report)
    return report


# --- an API server ---------------------------------------------------------------------------

def _get(url: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept": "application/geo+json, application/json;q=0.9, */*;q=0.1",
                                               "Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:  # noqa: S310 (scheme checked by the caller)
            body = resp.read()
            if resp.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return resp.status, body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"{url}: cannot be fetched ({getattr(exc, 'reason', exc)}); is the server running?") from None


def _json(url: str) -> dict:
    status, body = _get(url)
    if status != 200:
        raise SourceError(f"{url}: HTTP {status}; expected an OGC API JSON document")
    try:
        return json.loads(body)
    except ValueError:
        raise SourceError(f"{url}: the answer is not JSON") from None


def _with_query(url: str, **params) -> str:
    parts = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(parts.query))
    q.update({k: str(v) for k, v in params.items()})
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


def _next_link(doc: dict) -> str | None:
    for link in doc.get("links") or []:
        if link.get("rel") == "next" and link.get("href"):
            return link["href"]
    return None


def _items(report: ScanReport, base: str, cid: str, detect: tuple[str, ...]) -> None:
    url = _with_query(f"{base}/collections/{urllib.parse.quote(cid)}/items", f="json", limit=PAGE_LIMIT)
    seen_pages = 0
    while url and seen_pages < _MAX_PAGES:
        doc = _json(url)
        seen_pages += 1
        report.items["item pages"] += 1
        feats = doc.get("features") or []
        for feat in feats:
            report.items["features"] += 1
            fid = feat.get("id")
            where = f"{base}/collections/{cid}/items/{fid}"
            _check(report, where, "id", fid, detect)
            for k, v in (feat.get("properties") or {}).items():
                _check_property(report, where, f"{base}/collections/{cid}", str(k), v, detect)
        nxt = _next_link(doc)
        if not feats or nxt == url:
            break
        # pygeoapi's next links carry the server's configured public URL; keep the host we scan
        url = urllib.parse.urlunsplit(urllib.parse.urlsplit(nxt)._replace(
            scheme=urllib.parse.urlsplit(base).scheme, netloc=urllib.parse.urlsplit(base).netloc)) if nxt else None


def _tile_range(bounds: list[float], z: int) -> tuple[int, int, int, int]:
    n = 2 ** z
    w, s, e, nn = bounds
    s, nn = max(s, -85.05112878), min(nn, 85.05112878)

    def tx(lon: float) -> int:
        return min(n - 1, max(0, int((lon + 180.0) / 360.0 * n)))

    def ty(lat: float) -> int:
        r = math.radians(lat)
        return min(n - 1, max(0, int((1 - math.asinh(math.tan(r)) / math.pi) / 2 * n)))

    return tx(w), ty(nn), tx(e), ty(s)


def _tiles(report: ScanReport, base: str, cid: str, detect: tuple[str, ...]) -> None:
    root = f"{base}/collections/{urllib.parse.quote(cid)}/tiles/WebMercatorQuad"
    status, body = _get(f"{root}/tilejson.json")
    if status != 200:
        return  # a collection without tiles
    tj = json.loads(body)
    _check(report, f"{root}/tilejson.json", "tilejson", {k: v for k, v in tj.items() if k != "tiles"}, detect)
    lo, hi = int(tj.get("minzoom", 0)), int(tj.get("maxzoom", 0))
    bounds = tj.get("bounds") or [-180, -85, 180, 85]
    zoom = lo
    for z in range(lo, hi + 1):
        x0, y0, x1, y1 = _tile_range(bounds, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= MAX_TILES_PER_COLLECTION:
            zoom = z
    if zoom < hi:
        report.notes.append(f"collection '{cid}': tiles scanned at z{zoom} (deeper zooms exceed "
                            f"{MAX_TILES_PER_COLLECTION} tiles; the PMTiles file scan covers every tile)")
    x0, y0, x1, y1 = _tile_range(bounds, zoom)
    addresses = [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    if len(addresses) > MAX_TILES_PER_COLLECTION:
        report.notes.append(f"collection '{cid}': only {MAX_TILES_PER_COLLECTION} of {len(addresses)} tiles at "
                            f"its minzoom z{zoom} scanned")
        addresses = addresses[:MAX_TILES_PER_COLLECTION]
    for x, y in addresses:
        status, body = _get(f"{root}/{zoom}/{y}/{x}")
        if status == 200 and body:
            report.items["tiles"] += 1
            _mvt_values(report, root, f"{root}/{zoom}/{y}/{x}", _maybe_gunzip(body), detect)


def scan_url(url: str, detect: tuple[str, ...] = DETECTORS, tiles: bool = True) -> ScanReport:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{url}: give an http(s):// URL of a citytwin / OGC API server")
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    report = ScanReport(target=base)
    doc = _json(_with_query(f"{base}/collections", f="json"))
    collections = doc.get("collections") or []
    for c in collections:
        cid = str(c.get("id"))
        report.items["collections"] += 1
        _check(report, f"{base}/collections/{cid}", "collection", {k: v for k, v in c.items() if k != "links"}, detect)
        if c.get("itemType", "feature") == "feature":
            _items(report, base, cid, detect)
        if tiles:
            _tiles(report, base, cid, detect)
    _column_hits(report)
    return report


# --- dispatch ------------------------------------------------------------------------------

def scan(target: str, detect: Iterable[str] = DETECTORS) -> ScanReport:
    """Scan a GeoPackage, a PMTiles archive, a folder of them, or a server URL."""
    detect = tuple(detect)
    if re.match(r"^[a-z][a-z0-9+.-]*://", target, re.I):
        return scan_url(target, detect)
    path = Path(target)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder; give a .gpkg, a .pmtiles, a folder or an http(s) URL")
    if path.is_dir():
        report = ScanReport(target=str(path))
        files = sorted(p for p in path.rglob("*") if p.is_file() and (
            p.suffix.lower() in (".gpkg", ".pmtiles") or _is_live_store(p)))
        if not files:
            raise SourceError(f"{path}: no .gpkg, .pmtiles or live/*.sqlite files in this folder")
        for sub in _scan_files(files, detect):
            report.values += sub.values
            report.items.update(sub.items)
            report.hits += sub.hits
            report.notes += sub.notes
        report.items["files"] = len(files)
        return report
    return next(_scan_files([path], detect))


def _scan_files(files: list[Path], detect: tuple[str, ...]) -> Iterator[ScanReport]:
    for p in files:
        suffix = p.suffix.lower()
        if suffix == ".gpkg":
            yield scan_geopackage(p, detect)
        elif suffix == ".pmtiles":
            yield scan_pmtiles(p, detect)
        elif suffix == ".sqlite":
            yield scan_live(p, detect)
        else:
            raise SourceError(f"{p}: cannot scan {suffix or 'this file'}; give a .gpkg, a .pmtiles, a live layer's "
                              ".sqlite or an http(s) URL")


def _is_live_store(path: Path) -> bool:
    """A live layer's item store: <build>/live/<layer>.sqlite."""
    from pipelines.live import LIVE_DIR

    return path.suffix.lower() == ".sqlite" and path.parent.name == LIVE_DIR
