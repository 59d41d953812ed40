"""ETags of files served as they are on disk (3D Tiles content, PMTiles archives): from size, mtime
and inode, so a rebuilt file (a new inode after the swap) gets a new tag."""
from __future__ import annotations

import os


def etag_for(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in [t.strip().removeprefix("W/") for t in header.split(",")]
