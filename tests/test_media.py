"""Photo and video positions: EXIF GPS from a JPEG made here, ©xyz and ISO6709 keys in MP4/MOV built byte by
byte, and videos made by ffmpeg (tests/data/media, how in its README)."""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from pipelines.cli import main
from pipelines.project import init_project
from pipelines.readers.media import parse_iso6709, read_media, scan_media
from pipelines.store.gpkg import GeoPackageStore


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = Fraction(round((value - d - m / 60) * 3600 * 10000), 10000)
    return Fraction(d), Fraction(m), s


def write_jpeg(path: Path, lat: float, lon: float, *, alt: float | None = None, direction: float | None = None,
               when: str | None = None) -> None:
    img = Image.new("RGB", (16, 16), (200, 30, 30))
    exif = Image.Exif()
    gps = {1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W", 4: _dms(lon),
           29: "2018:05:04", 7: (Fraction(3), Fraction(25), Fraction(30))}
    if alt is not None:
        gps[5], gps[6] = (b"\x01" if alt < 0 else b"\x00"), Fraction(abs(alt)).limit_denominator(1000)
    if direction is not None:
        gps[16], gps[17] = "T", Fraction(direction).limit_denominator(100)
    exif[0x8825] = gps
    if when:
        exif[0x8769] = {0x9003: when}
    img.save(path, "JPEG", exif=exif)


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def write_mp4_xyz(path: Path, iso: str) -> None:
    text = iso.encode()
    xyz = box(b"\xa9xyz", struct.pack(">HH", len(text), 0x15C7) + text)  # length, language, string
    moov = box(b"moov", box(b"mvhd", bytes(100)) + box(b"udta", xyz))
    path.write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + box(b"mdat", bytes(64)) + moov)


def write_mov_keys(path: Path, iso: str) -> None:
    key = b"com.apple.quicktime.location.ISO6709"
    keys = box(b"keys", struct.pack(">II", 0, 1) + struct.pack(">I", 8 + len(key)) + b"mdta" + key)
    data = box(b"data", struct.pack(">II", 1, 0) + iso.encode())
    ilst = box(b"ilst", box(struct.pack(">I", 1), data))
    meta = box(b"meta", box(b"hdlr", bytes(25)) + keys + ilst)  # QuickTime meta: no version/flags
    path.write_bytes(box(b"ftyp", b"qt  \x00\x00\x00\x00qt  ") + box(b"moov", box(b"mvhd", bytes(100)) + meta))


def test_jpeg_exif_position_altitude_direction_time(tmp_path):
    p = tmp_path / "palace.jpg"
    write_jpeg(p, 37.579617, 126.977041, alt=38.5, direction=123.45, when="2018:05:04 12:25:30")
    m = read_media(p)
    assert m.located and m.problem is None and m.media_type == "photo"
    assert m.lat == pytest.approx(37.579617, abs=1e-6) and m.lon == pytest.approx(126.977041, abs=1e-6)
    assert m.altitude_m == pytest.approx(38.5) and m.direction_deg == pytest.approx(123.45) and m.direction_ref == "T"
    assert m.taken_at == "2018-05-04T12:25:30" and m.gps_time_utc == "2018-05-04T03:25:30.000Z"


def test_jpeg_southern_western_and_below_sea_level(tmp_path):
    p = tmp_path / "x.jpg"
    write_jpeg(p, -33.8568, -70.6483, alt=-12.0)
    m = read_media(p)
    assert (round(m.lat, 6), round(m.lon, 6), m.altitude_m) == (-33.8568, -70.6483, -12.0)


def test_mp4_xyz_atom(tmp_path):
    p = tmp_path / "clip.mp4"
    write_mp4_xyz(p, "+37.5665+126.9780+012.300/")
    m = read_media(p)
    assert (m.media_type, m.lat, m.lon, m.altitude_m) == ("video", 37.5665, 126.978, 12.3)


def test_mov_quicktime_location_key(tmp_path):
    p = tmp_path / "clip.mov"
    write_mov_keys(p, "+37.5512+126.9882+243.000/")
    m = read_media(p)
    assert (m.lat, m.lon, m.altitude_m) == (37.5512, 126.9882, 243.0)


FFMPEG_MEDIA = Path(__file__).parent / "data" / "media"
LOCI_STEP = 1 / 65536  # 'loci' keeps degrees in 16.16 fixed point; ©xyz and ISO6709 keys keep the text given


@pytest.mark.parametrize("name, lat, lon, alt, created, step", [
    ("gyeongbokgung.mp4", 37.5796, 126.9770, 38.5, "2018-05-04T03:25:30Z", LOCI_STEP),
    ("santiago.mp4", -33.4489, -70.6693, 520.0, "2019-12-31T23:59:59Z", LOCI_STEP),
    ("busan.mov", 35.1796, 129.0756, None, "2020-02-29T12:00:00Z", 1e-12),
    ("namsan_tower.mov", 37.5512, 126.9882, 243.0, "2021-10-09T14:05:00Z", 1e-12),
])
def test_videos_made_by_ffmpeg(name, lat, lon, alt, created, step):
    # the values below are the ones given to ffmpeg's -metadata location / creation_time
    m = read_media(FFMPEG_MEDIA / name)
    assert m.problem is None and m.media_type == "video"
    assert m.lat == pytest.approx(lat, abs=step) and m.lon == pytest.approx(lon, abs=step)
    assert m.altitude_m == (None if alt is None else pytest.approx(alt, abs=step))
    assert m.taken_at == created


def test_photos_command_publishes_the_ffmpeg_videos_with_their_time(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    res = CliRunner().invoke(main, ["photos", str(FFMPEG_MEDIA), "--layer", "clips", "--project", str(project)])
    assert res.exit_code == 0, res.output
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    try:
        clips = store.read("clips").sort_values("file")
    finally:
        store.close()
    assert clips.file.tolist() == ["busan.mov", "gyeongbokgung.mp4", "namsan_tower.mov", "santiago.mp4"]
    assert clips.taken_at.tolist() == ["2020-02-29T12:00:00Z", "2018-05-04T03:25:30Z", "2021-10-09T14:05:00Z",
                                       "2019-12-31T23:59:59Z"]
    assert clips.geometry.y.tolist() == pytest.approx([35.1796, 37.5796, 37.5512, -33.4489], abs=LOCI_STEP)


def test_iso6709_forms():
    assert parse_iso6709("+37.5665+126.9780/") == (37.5665, 126.978, None)
    lat, lon, _ = parse_iso6709("+3733.99+12658.68/")  # degrees and minutes
    assert (round(lat, 6), round(lon, 6)) == (round(37 + 33.99 / 60, 6), round(126 + 58.68 / 60, 6))
    lat, lon, _ = parse_iso6709("-333412-0703854/")  # degrees, minutes, seconds
    assert (round(lat, 6), round(lon, 6)) == (round(-(33 + 34 / 60 + 12 / 3600), 6), round(-(70 + 38 / 60 + 54 / 3600), 6))
    with pytest.raises(ValueError):
        parse_iso6709("+99.0+10.0/")


def test_files_without_position_are_reported(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "nogps.jpg", "JPEG")
    p = tmp_path / "noloc.mp4"
    p.write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"moov", box(b"mvhd", bytes(100))))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "cut.mp4").write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00") + struct.pack(">I", 5000) + b"moov")
    write_jpeg(tmp_path / "ok.jpg", 37.5, 127.0)
    found = {m.path.name: m for m in scan_media(tmp_path)}
    assert sorted(found) == ["broken.jpg", "cut.mp4", "nogps.jpg", "noloc.mp4", "ok.jpg"]
    assert found["ok.jpg"].located
    assert found["nogps.jpg"].problem == "no EXIF GPS tags"
    assert found["noloc.mp4"].problem == "no location atom (©xyz, ISO6709 key or loci)"
    assert "not a readable JPEG" in found["broken.jpg"].problem
    assert "no moov box" in found["cut.mp4"].problem
