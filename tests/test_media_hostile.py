"""Hostile photos and videos: each one is reported by name and reason, the others are published,
and none of them makes ``citytwin photos`` allocate more than a small, fixed amount of memory."""
from __future__ import annotations

import struct
from pathlib import Path

from peak_rss import run_measured
from pipelines.project import init_project
from pipelines.readers.media import read_media
from pipelines.store.gpkg import GeoPackageStore
from test_media import box, write_jpeg, write_mp4_xyz

MiB = 1 << 20


def write_huge_gif(path: Path, width: int = 30_000, height: int = 30_000) -> None:
    """A few bytes of GIF whose header declares width x height pixels (here 900 Mpx)."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08\x02\x4c\x01\x00\x3b"
    path.write_bytes(head + image)


def write_mp4_absurd_key(path: Path, size: int) -> None:
    """A sparse MP4 of ``size`` bytes: moov > meta > keys, whose one key claims ~4 GB."""
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    moov_size = size - len(ftyp)
    key = struct.pack(">I4s", 0xFFFF_FFF0, b"mdta")
    keys = struct.pack(">I4s", moov_size - 16, b"keys") + struct.pack(">II", 0, 1) + key
    meta = struct.pack(">I4s", moov_size - 8, b"meta") + keys
    with path.open("wb") as f:
        f.write(ftyp + struct.pack(">I4s", moov_size, b"moov") + meta)
        f.truncate(size)


def test_readers_report_disguised_gif_and_absurd_key_sizes(tmp_path):
    write_huge_gif(tmp_path / "bomb.jpg")
    pos = read_media(tmp_path / "bomb.jpg")
    assert not pos.located and pos.problem.startswith("not a readable JPEG (cannot identify image file")
    # a data box shorter than its own 8-byte header must not make the reader read the rest of the file
    key = b"com.apple.quicktime.location.ISO6709"
    keys = box(b"keys", struct.pack(">II", 0, 1) + struct.pack(">I", 8 + len(key)) + b"mdta" + key)
    ilst = box(b"ilst", box(struct.pack(">I", 1), box(b"data", b"\x00\x00")))
    moov = box(b"moov", box(b"meta", box(b"hdlr", bytes(25)) + keys + ilst))
    (tmp_path / "short.mov").write_bytes(box(b"ftyp", b"qt  \x00\x00\x00\x00qt  ") + moov + bytes(64))
    assert read_media(tmp_path / "short.mov").problem == "no location atom (©xyz, ISO6709 key or loci)"
    # a keys box cut short inside the moov
    cut = box(b"moov", box(b"meta", struct.pack(">I4s", 20, b"keys") + struct.pack(">II", 0, 5) + b"\x00\x00\x00"))
    (tmp_path / "cut.mp4").write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + cut)
    assert not read_media(tmp_path / "cut.mp4").located


def _mp4_with(path: Path, *boxes: bytes) -> Path:
    path.write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + box(b"moov", b"".join(boxes)))
    return path


def _loci(name: bytes, coords: bytes, tail: bytes = b"earth\x00\x00") -> bytes:
    """udta > loci: version/flags, language, ``name`` (with its terminator), role 0, ``coords``, ``tail``."""
    return box(b"udta", box(b"loci", bytes(4) + b"\x15\xc7" + name + b"\x00" + coords + tail))


def test_loci_and_mvhd_that_lie_are_reported(tmp_path):
    lon, lat = round(126.97 * 65536), round(37.57 * 65536)
    fixed = struct.pack(">iii", lon, lat, 0)
    endless = _mp4_with(tmp_path / "endless.mp4", _loci(b"x" * 5000, fixed))  # no NUL in what is read
    assert read_media(endless).problem == "3GPP loci box: its name has no end"
    cut = _mp4_with(tmp_path / "cut.mp4", _loci(b"\x00", fixed[:6], tail=b""))
    assert read_media(cut).problem == "3GPP loci box is cut short before its coordinates"
    north = struct.pack(">iii", lon, round(91.5 * 65536), 0)
    assert read_media(_mp4_with(tmp_path / "n.mp4", _loci(b"\x00", north))).problem == \
        f"3GPP loci position out of range (91.5, {lon / 65536})"
    utf16 = _mp4_with(tmp_path / "u.mp4", _loci("\ufeff경복궁".encode("utf-16-be") + b"\x00\x00", fixed))
    m = read_media(utf16)
    assert (m.lat, m.lon, m.problem) == (lat / 65536, lon / 65536, None)
    # a version-1 mvhd whose 64-bit creation time is past any calendar: no time, the position still read
    mvhd = box(b"mvhd", b"\x01" + bytes(3) + b"\xff" * 16 + bytes(92))
    m = read_media(_mp4_with(tmp_path / "far.mp4", mvhd, _loci(b"\x00", fixed)))
    assert m.taken_at is None and m.located and m.problem is None


def test_photos_run_reports_hostile_files_and_publishes_the_others(tmp_path):
    project = tmp_path / "p"
    init_project(project)
    media = tmp_path / "media"
    media.mkdir()
    write_jpeg(media / "good.jpg", 37.579617, 126.977041)
    write_mp4_xyz(media / "good.mp4", "+37.5512+126.9882+243.000/")
    write_huge_gif(media / "disguised.jpg")
    (media / "truncated.jpg").write_bytes((media / "good.jpg").read_bytes()[:300])
    write_mp4_absurd_key(media / "absurd.mp4", 3 * 1024 * MiB)

    res = run_measured("photos", media, "--layer", "photos", "--project", project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "published 2 of 5" in res.stdout
    assert "not placed (3)" in res.stdout
    assert "absurd.mp4 (no location atom" in res.stdout
    assert "disguised.jpg (not a readable JPEG (cannot identify image file" in res.stdout
    assert "truncated.jpg (not a readable JPEG (Truncated File Read))" in res.stdout
    assert "Traceback" not in res.stderr
    assert res.peak_mb < 600, f"citytwin photos peaked at {res.peak_mb:.0f} MB"
    store = GeoPackageStore(project / "build" / "citytwin.gpkg")
    try:
        published = store.read("photos").sort_values("file")
    finally:
        store.close()
    assert published.file.tolist() == ["good.jpg", "good.mp4"]
    assert published.geometry.y.round(6).tolist() == [37.579617, 37.5512]
