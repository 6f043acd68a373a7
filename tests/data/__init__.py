"""The real G-code files the tests and benchmarks use, kept in this folder (README.md: sources, licences).

`gcode_file(name)` gives a file's path; a file stored as `NAME.xz` is unpacked once into the temporary
folder, so a clone needs nothing beside the repository (the benchmarks' own choice of files is in
tests/bench/data.py).
"""

from __future__ import annotations

import lzma
import os
import shutil
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent


def gcode_names() -> list[str]:
    """The names of the G-code files kept here, sorted (a packed `NAME.xz` counts as NAME)."""
    return sorted(p.name.removesuffix(".xz") for p in DATA.iterdir() if ".gcode" in p.name)


def gcode_file(name: str) -> Path:
    """The path of the real G-code file `name` from tests/data; FileNotFoundError naming it if absent."""
    plain = DATA / name
    if plain.is_file():
        return plain
    packed = DATA / f"{name}.xz"
    if not packed.is_file():
        raise FileNotFoundError(f"{name} is not in {DATA} (see {DATA / 'README.md'})")
    # Keyed by the packed file's size too: two checkouts holding different versions never share a copy.
    cache = Path(tempfile.gettempdir()) / f"fabnode-test-data-{os.getuid()}" / str(packed.stat().st_size)
    unpacked = cache / name
    if unpacked.is_file() and unpacked.stat().st_mtime >= packed.stat().st_mtime:
        return unpacked
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Unpack beside and rename: two test processes unpacking at once never see half a file.
    fd, partial = tempfile.mkstemp(dir=cache, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out, lzma.open(packed) as source:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(partial, unpacked)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return unpacked
