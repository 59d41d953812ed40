"""GTFS zips that expand into far more than they hold: refused with one clear line, in bounded
memory, before anything is published. Each bomb is built here by streaming rows into a
compressed zip member (never held in memory)."""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from peak_rss import run_measured
from test_transit import CATALOG, feed_files, write_zip

MiB = 1 << 20
ROW = b"S1,Bomb stop,37.5665,126.9780\n"
BLOCK = ROW * (MiB // len(ROW))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bomb(path: Path, stops_bytes: int, level: int) -> Path:
    """A valid small feed whose stops.txt is ``stops_bytes`` of repeated rows."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, text in feed_files().items():
            if name != "stops.txt":
                zf.writestr(name, text)
        with zf.open("stops.txt", "w", force_zip64=stops_bytes >= 2**31) as f:
            f.write(b"stop_id,stop_name,stop_lat,stop_lon\n")
            for _ in range(stops_bytes // len(BLOCK)):
                f.write(BLOCK)
    return path


def lie_about_size(path: Path, member: str, claimed: int) -> None:
    """Rewrite the uncompressed size of ``member`` in its local header and central directory entry."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        directory = zf.start_dir
    data = bytearray(path.read_bytes())
    assert data[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, info.header_offset + 22, claimed)
    entry = data.index(b"PK\x01\x02", directory)
    while data[entry + 46:entry + 46 + len(member)] != member.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, claimed)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    big = write_bomb(root / "big.zip", 3 * 1024 * MiB, level=1)  # 3 GB of rows in ~20 MB
    dense = write_bomb(root / "dense.zip", 200 * MiB, level=9)  # under the size limit, ~400-fold
    liar = shutil.copy(dense, root / "liar.zip")
    lie_about_size(Path(liar), "stops.txt", 4000)
    return {"big": big, "dense": dense, "liar": Path(liar)}


@pytest.fixture
def published(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    res = run_measured("ingest", write_zip(tmp_path / "good.zip", feed_files()), "--layer", "city",
                       "--project", project)
    assert res.returncode == 0, res.stdout + res.stderr
    return project


def ingest_refused(zip_path: Path, project: Path, member: str | None = "stops.txt", **env: str) -> str:
    gpkg = project / "build" / "citytwin.gpkg"
    before, catalog_before = digest(gpkg), (project / "citytwin.yaml").read_text()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = run_measured("ingest", zip_path, "--layer", "city", "--project", project)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    if member:
        assert lines[0].startswith(f"error: {zip_path}: {member}: "), res.stderr
    assert res.peak_mb < 1000, f"citytwin ingest peaked at {res.peak_mb:.0f} MB"
    assert digest(gpkg) == before and (project / "citytwin.yaml").read_text() == catalog_before
    return lines[0]


def test_a_gigabytes_table_is_refused_by_its_size(bombs, published):
    line = ingest_refused(bombs["big"], published)
    assert "3,072 MB uncompressed, over the limit of 512 MB per GTFS table" in line
    assert "CITYTWIN_GTFS_MAX_MEMBER_MB=<megabytes>" in line


def test_a_table_that_expands_hundreds_fold_is_refused(bombs, published):
    info = zipfile.ZipFile(bombs["dense"]).getinfo("stops.txt")
    fold = info.file_size / info.compress_size
    assert fold > 200
    line = ingest_refused(bombs["dense"], published)
    assert f"expands {fold:,.0f}-fold (200 MB from {info.compress_size / 1024:,.0f} kB in the zip)" in line
    assert "over the 200-fold limit" in line


def test_a_zip_that_lies_about_the_size_is_damaged_not_read_on(bombs, published):
    line = ingest_refused(bombs["liar"], published)
    assert "the zip entry is damaged" in line and "Re-create the zip" in line


def test_the_limit_is_an_environment_setting(tmp_path, published):
    files = feed_files()
    head, rows = files["stop_times.txt"].split("\n", 1)
    files["stop_times.txt"] = head + "\n" + rows * (2 * MiB // len(rows) + 1)
    feed = write_zip(tmp_path / "long.zip", files)
    line = ingest_refused(feed, published, "stop_times.txt", CITYTWIN_GTFS_MAX_MEMBER_MB="1")
    assert "stop_times.txt: 2 MB uncompressed, over the limit of 1 MB per GTFS table" in line
    line = ingest_refused(feed, published, None, CITYTWIN_GTFS_MAX_MEMBER_MB="lots")
    assert "CITYTWIN_GTFS_MAX_MEMBER_MB='lots': give a whole number of megabytes" in line
