"""Scratch space for build outputs, and what a published output looks like on disk.

An output (a tileset folder, a PMTiles archive, a TileJSON file) is written next to its final
place under a scratch name, ``.<output name>.partial-<pid>-<random>[.suffix]``, and moved in
when complete. A run that is killed leaves its scratch behind; the next run writing the same
output removes the scratch of processes that are gone (a live one may be a concurrent build).
Published outputs are readable by everyone (folders 0755, files 0644) like any web-served
build output; the scratch stays private (0700/0600) until then.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

DIR_MODE = 0o755
FILE_MODE = 0o644
_SCRATCH = re.compile(r"\.partial-(?P<pid>\d+)-[a-z0-9_]+(?:\.[A-Za-z0-9]+)?")


def _prefix(out: Path) -> str:
    return f".{out.name}.partial-{os.getpid()}-"


def scratch_dir(out: Path) -> Path:
    """A new empty folder next to ``out``, after removing scratch that killed runs left there."""
    clear_stale(out)
    return Path(tempfile.mkdtemp(prefix=_prefix(out), dir=out.parent))


def scratch_file(out: Path) -> tuple[int, Path]:
    """(open descriptor, path) of a new file next to ``out``, after removing stale scratch."""
    clear_stale(out)
    fd, name = tempfile.mkstemp(prefix=_prefix(out), suffix=out.suffix, dir=out.parent)
    return fd, Path(name)


def clear_stale(out: Path) -> list[Path]:
    """Remove scratch of ``out`` whose process is no longer running; returns what was removed."""
    removed = []
    head = f".{out.name}"
    for path in Path(out.parent).glob(f"{glob.escape(head)}.partial-*"):
        match = _SCRATCH.fullmatch(path.name[len(head):])
        if match is None or _alive(int(match["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def make_readable(path: Path) -> None:
    """Folders 0755 and files 0644 under ``path`` (or the file itself), whatever the umask or mkdtemp gave."""
    path = Path(path)
    if not path.is_dir():
        os.chmod(path, FILE_MODE)
        return
    for root, _dirs, files in os.walk(path):
        os.chmod(root, DIR_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), FILE_MODE)
