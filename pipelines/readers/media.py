"""Positions of photos and videos: EXIF GPS from JPEG, the ISO 6709 location atom from MP4/MOV.

JPEG: GPS latitude/longitude, altitude, GPSImgDirection (the compass direction the
camera faced), DateTimeOriginal and the GPS UTC time, read through Pillow.
MP4/MOV: the atoms are walked here with plain seeks (a video's media data is never
read): ``moov/udta/©xyz`` (an ISO 6709 string such as "+37.5665+126.9780+012.3/"),
QuickTime's ``moov/meta`` keys ``com.apple.quicktime.location.ISO6709``, and the 3GPP
``loci`` box (16.16 fixed-point degrees; what ffmpeg writes into an .mp4). The recording
time is the ``mvhd`` creation time, which the format keeps in UTC.

A file without a position is reported with the reason, never silently dropped.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

JPEG_SUFFIXES = {".jpg", ".jpeg"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".3gp"}
MEDIA_SUFFIXES = JPEG_SUFFIXES | VIDEO_SUFFIXES
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_XYZ = b"\xa9xyz"
_LOCI = b"loci"
_EPOCH_1904 = datetime(1904, 1, 1, tzinfo=timezone.utc)  # MP4/QuickTime times count seconds from here
_CONTAINERS = {b"moov", b"udta", b"meta", b"trak", b"mdia", b"minf", b"ilst"}
_MAX_KEY = 1024  # a metadata key is a short reverse-DNS name; a larger size is corrupt
_MAX_BOXES = 100_000  # boxes visited per file: a real moov holds hundreds, a crafted one millions
Point = tuple[float, float, float | None]  # lat, lon, altitude in metres


@dataclass
class MediaPosition:
    path: Path
    media_type: str  # 'photo' | 'video'
    lon: float | None = None
    lat: float | None = None
    altitude_m: float | None = None
    direction_deg: float | None = None  # GPSImgDirection, 0-360
    direction_ref: str | None = None  # 'T' true north, 'M' magnetic
    taken_at: str | None = None  # photo: DateTimeOriginal as written (camera local time); video: UTC, ends in Z
    gps_time_utc: str | None = None
    problem: str | None = None  # why there is no position

    @property
    def located(self) -> bool:
        return self.lon is not None and self.lat is not None


# --- JPEG / EXIF ----------------------------------------------------------------------

def _ratio(v) -> float:
    if isinstance(v, tuple) and len(v) == 2:
        return float(v[0]) / float(v[1]) if v[1] else float("nan")
    return float(v)


def _dms(values, ref) -> float:
    d, m, s = (_ratio(v) for v in values)
    deg = d + m / 60.0 + s / 3600.0
    ref = ref.decode() if isinstance(ref, bytes) else (ref or "")
    return -deg if ref.strip().upper() in ("S", "W") else deg


def read_jpeg(path: Path) -> MediaPosition:
    from PIL import Image, UnidentifiedImageError

    out = MediaPosition(path=path, media_type="photo")
    try:
        # JPEG only: a .jpg that is really a GIF or PNG is never parsed, however large it claims to be
        with Image.open(path, formats=("JPEG",)) as img:
            exif = img.getexif()
    except Image.DecompressionBombError as exc:
        out.problem = f"not opened: {exc}"
        return out
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        out.problem = f"not a readable JPEG ({exc})"
        return out
    sub = exif.get_ifd(_EXIF_IFD)
    stamp = sub.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    if stamp:
        try:
            out.taken_at = datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            pass
    gps = exif.get_ifd(_GPS_IFD)
    if not gps:
        out.problem = "no EXIF GPS tags"
        return out
    try:
        if 2 in gps and 4 in gps:
            lat, lon = _dms(gps[2], gps.get(1, "N")), _dms(gps[4], gps.get(3, "E"))
            if -90 <= lat <= 90 and -180 <= lon <= 180 and not (lat == 0 and lon == 0):
                out.lat, out.lon = lat, lon
            else:
                out.problem = f"EXIF GPS position out of range ({lat}, {lon})"
        else:
            out.problem = "EXIF GPS block without latitude/longitude"
        if 6 in gps:
            alt = _ratio(gps[6])
            ref = gps.get(5, 0)
            below = (ref[0] if isinstance(ref, bytes) and ref else ref) == 1
            out.altitude_m = -alt if below else alt
        if 17 in gps:
            out.direction_deg = _ratio(gps[17]) % 360.0
            ref = gps.get(16)
            out.direction_ref = (ref.decode() if isinstance(ref, bytes) else ref or None)
            out.direction_ref = out.direction_ref.strip("\x00 ") if out.direction_ref else None
        if 29 in gps and 7 in gps:
            h, m, s = (_ratio(v) for v in gps[7])
            out.gps_time_utc = f"{str(gps[29]).replace(':', '-')}T{int(h):02d}:{int(m):02d}:{s:06.3f}Z"
    except (TypeError, ValueError, ZeroDivisionError, IndexError) as exc:
        out.lon = out.lat = None
        out.problem = f"EXIF GPS tags malformed ({exc})"
    return out


# --- MP4 / MOV atoms ------------------------------------------------------------------

_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS[^/]*)?/?$")


def _iso_angle(text: str, deg_digits: int) -> float:
    """ISO 6709 angle: ±DD[.d], ±DDMM[.d] or ±DDMMSS[.d] (longitude: one more degree digit)."""
    sign = -1.0 if text[0] == "-" else 1.0
    body = text[1:]
    whole, _, frac = body.partition(".")
    frac = float("0." + frac) if frac else 0.0
    n = len(whole)
    if n == deg_digits:
        return sign * (int(whole) + frac)
    if n == deg_digits + 2:
        return sign * (int(whole[:deg_digits]) + (int(whole[deg_digits:]) + frac) / 60.0)
    if n == deg_digits + 4:
        return sign * (int(whole[:deg_digits]) + int(whole[deg_digits:deg_digits + 2]) / 60.0
                       + (int(whole[deg_digits + 2:]) + frac) / 3600.0)
    raise ValueError(f"ISO 6709 angle {text!r} has {n} integer digits")


def parse_iso6709(text: str) -> tuple[float, float, float | None]:
    """(lat, lon, altitude) from an ISO 6709 point string such as '+37.5665+126.9780+012.3/'."""
    m = _ISO6709.match(text.strip().strip("\x00"))
    if not m:
        raise ValueError(f"not an ISO 6709 point: {text!r}")
    lat = _iso_angle(m.group(1), 2)
    lon = _iso_angle(m.group(2), 3)
    alt = float(m.group(3)) if m.group(3) else None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"ISO 6709 point out of range: {text!r}")
    return lat, lon, alt


class _Walk:
    """One file's walk: its handle and how many more boxes may be visited."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.left = _MAX_BOXES


def _boxes(walk: _Walk, start: int, end: int):
    """(type, payload start, payload end) of each box between start and end."""
    f = walk.f
    pos = start
    while pos + 8 <= end and walk.left > 0:
        walk.left -= 1
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return  # truncated or corrupt: stop rather than read garbage
        yield kind, pos + header, pos + size
        pos += size


def _meta_start(f: BinaryIO, start: int, end: int) -> int:
    """ISO 'meta' is a full box (4 zero bytes of version/flags first); QuickTime's starts with a child box size."""
    f.seek(start)
    return start + 4 if f.read(4) == b"\x00\x00\x00\x00" else start


def _read_xyz(f: BinaryIO, start: int, end: int) -> str | None:
    f.seek(start)
    data = f.read(min(end - start, 4096))
    if len(data) >= 4:
        n = struct.unpack(">H", data[:2])[0]  # string length, then a 2-byte language code
        if 0 < n <= len(data) - 4:
            return data[4:4 + n].decode("utf-8", "replace")
    return data.decode("utf-8", "replace").strip("\x00") or None


def _read_keys_location(walk: _Walk, meta_start: int, meta_end: int) -> str | None:
    f = walk.f
    keys: list[bytes] = []
    ilst = None
    for kind, s, e in _boxes(walk, meta_start, meta_end):
        if kind == b"keys" and e - s >= 8:
            f.seek(s + 4)  # version/flags
            count = struct.unpack(">I", f.read(4))[0]
            pos = s + 8
            for _ in range(min(count, 1000)):
                f.seek(pos)
                head = f.read(8)
                if len(head) < 8:
                    break
                size, _ns = struct.unpack(">I4s", head)
                if size < 8 or size - 8 > _MAX_KEY or pos + size > e:
                    break  # a key cannot be larger than its box, nor than any key name
                keys.append(f.read(size - 8))
                pos += size
        elif kind == b"ilst":
            ilst = (s, e)
    if not keys or ilst is None:
        return None
    for kind, s, e in _boxes(walk, *ilst):
        idx = struct.unpack(">I", kind)[0]
        if 1 <= idx <= len(keys) and keys[idx - 1] == b"com.apple.quicktime.location.ISO6709":
            for dkind, ds, de in _boxes(walk, s, e):
                if dkind == b"data" and de - ds > 8:
                    f.seek(ds + 8)  # type + locale
                    return f.read(min(de - ds - 8, 4096)).decode("utf-8", "replace")
    return None


def _skip_string(data: bytes, pos: int) -> int:
    """Offset just past a 3GPP string at ``pos``: UTF-8 ending in NUL, or UTF-16 (BOM first) ending in NUL NUL."""
    if data[pos:pos + 2] in (b"\xfe\xff", b"\xff\xfe"):
        for i in range(pos + 2, len(data) - 1, 2):
            if data[i:i + 2] == b"\x00\x00":
                return i + 2
        raise ValueError("3GPP loci box: its name has no end")
    end = data.find(b"\x00", pos)
    if end < 0:
        raise ValueError("3GPP loci box: its name has no end")
    return end + 1


def _read_loci(f: BinaryIO, start: int, end: int) -> Point:
    """3GPP 'loci': version/flags, language, name, role, then longitude, latitude, altitude as 16.16 fixed point."""
    f.seek(start)
    data = f.read(min(end - start, 4096))
    pos = _skip_string(data, 6) + 1  # past version/flags (4), language (2), the name, and the role byte
    if pos + 12 > len(data):
        raise ValueError("3GPP loci box is cut short before its coordinates")
    lon, lat, alt = (v / 65536.0 for v in struct.unpack(">iii", data[pos:pos + 12]))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"3GPP loci position out of range ({lat}, {lon})")
    return lat, lon, alt


def _find_location(walk: _Walk, start: int, end: int, depth: int = 0) -> Point | None:
    """The first position below ``start``; ValueError when the atom holding it is malformed."""
    if depth > 6:
        return None
    for kind, s, e in _boxes(walk, start, end):
        if kind == _XYZ:
            text = _read_xyz(walk.f, s, e)
            if text:
                return parse_iso6709(text)
        elif kind == _LOCI:
            return _read_loci(walk.f, s, e)
        elif kind == b"meta":
            ms = _meta_start(walk.f, s, e)
            text = _read_keys_location(walk, ms, e)
            point = parse_iso6709(text) if text else _find_location(walk, ms, e, depth + 1)
            if point:
                return point
        elif kind in _CONTAINERS:
            point = _find_location(walk, s, e, depth + 1)
            if point:
                return point
    return None


def _creation_time(walk: _Walk, moov_start: int, moov_end: int) -> str | None:
    """The movie header's creation time (UTC) in ISO form; None when unset (0) or absent."""
    mvhd = next(((s, e) for kind, s, e in _boxes(walk, moov_start, moov_end) if kind == b"mvhd"), None)
    if mvhd is None or mvhd[1] - mvhd[0] < 12:
        return None
    walk.f.seek(mvhd[0])
    head = walk.f.read(12)
    seconds = struct.unpack(">Q", head[4:12])[0] if head[0] == 1 else struct.unpack(">I", head[4:8])[0]
    if seconds == 0:
        return None
    try:
        return (_EPOCH_1904 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:  # a 64-bit time past the year 9999 is corrupt, not a date
        return None


def read_video(path: Path) -> MediaPosition:
    out = MediaPosition(path=path, media_type="video")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"wide", b"free", b"mdat", b"skip"):
            out.problem = "not an MP4/MOV file (no ftyp/moov box at the start)"
            return out
        walk = _Walk(f)
        moov = next(((s, e) for kind, s, e in _boxes(walk, 0, size) if kind == b"moov"), None)
        if moov is None:
            out.problem = "no moov box (truncated or not a finished recording)"
            return out
        try:
            out.taken_at = _creation_time(walk, *moov)
            point = _find_location(walk, *moov)
        except struct.error:  # a box cut short inside the moov
            out.problem = "corrupt moov box (a metadata box is cut short)"
            return out
        except ValueError as exc:
            out.problem = str(exc)
            return out
    if point is None:
        out.problem = "no location atom (©xyz, ISO6709 key or loci)"
        return out
    out.lat, out.lon, out.altitude_m = point
    return out


def read_media(path: Path) -> MediaPosition:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JPEG_SUFFIXES:
        return read_jpeg(path)
    if suffix in VIDEO_SUFFIXES:
        return read_video(path)
    return MediaPosition(path=path, media_type="other", problem=f"unsupported file type {suffix or '(none)'}")


def scan_media(directory: Path) -> list[MediaPosition]:
    """Every photo/video under ``directory`` (recursively, sorted), with or without a position."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    return [read_media(p) for p in files]
