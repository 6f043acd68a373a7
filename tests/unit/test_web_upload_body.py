"""The multipart receiver alone: whatever the chunking, the file on disk is the file sent; refusals."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import BinaryIO

import pytest

from fabnode.web.uploads import (
    UploadReceiver,
    UploadRefused,
    boundary_of,
    check_folder,
    check_name,
    remove_leftovers,
    sniff,
)
from tests.conftest import gcode_path
from tests.data.web.prusaslicer import prusaslicer_body

BOUNDARY = "------------------------d74496d66958873e"


def receive(folder: Path, body: bytes, chunk: int, limit: int = 10 * 1024 * 1024) -> UploadReceiver:
    receiver = UploadReceiver(folder, BOUNDARY.encode(), limit)
    for i in range(0, len(body), chunk):
        receiver.feed(body[i : i + chunk])
    return receiver


@pytest.mark.parametrize("chunk", [1, 7, 511, 512, 513, 65536, 10**7])
def test_any_chunking_gives_the_same_file_and_fields(tmp_path: Path, chunk: int) -> None:
    data = gcode_path("prusaslicer-cubhelix.gcode").read_bytes()[: 20_000 if chunk < 10 else None]
    body, _ = prusaslicer_body(data, "cubhelix.gcode", print_=True, path="ada", boundary=BOUNDARY)
    received = receive(tmp_path, body, chunk).finish()
    assert received.path.read_bytes() == data and received.size == len(data)
    assert received.sha256 == hashlib.sha256(data).hexdigest()
    assert (received.name, received.folder, received.fields) == ("cubhelix.gcode", "ada",
                                                                 {"print": "true", "path": "ada"})


def test_a_file_smaller_than_the_sniff_is_written_whole(tmp_path: Path) -> None:
    body, _ = prusaslicer_body(b"G28\nM84\n", "tiny.gcode", boundary=BOUNDARY)
    assert receive(tmp_path, body, 3).finish().path.read_bytes() == b"G28\nM84\n"


def test_the_limit_is_passed_mid_file(tmp_path: Path) -> None:
    body, _ = prusaslicer_body(b"G1 X1\n" * 2000, "big.gcode", boundary=BOUNDARY)
    with pytest.raises(UploadRefused) as caught:
        receive(tmp_path, body, 100, limit=5000)
    assert caught.value.kind == "too_large"


def test_a_full_disk_is_disk_full_and_abort_leaves_nothing(tmp_path: Path) -> None:
    """ENOSPC injected through the writer (the integration test uses a real tiny tmpfs when it can)."""

    class FillsUp:
        def __init__(self, path: Path) -> None:
            self.file = path.open("wb")

        def write(self, data: bytes) -> int:
            if self.file.tell() + len(data) > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name: str) -> object:
            return getattr(self.file, name)

    def open_part(folder: Path) -> tuple[Path, BinaryIO]:
        path = folder / ".incoming-test.part"
        return path, FillsUp(path)  # type: ignore[return-value]

    body, _ = prusaslicer_body(b"G1 X1\n" * 2000, "big.gcode", boundary=BOUNDARY)
    receiver = UploadReceiver(tmp_path, BOUNDARY.encode(), 10**6, open_part=open_part)
    with pytest.raises(UploadRefused) as caught:
        for i in range(0, len(body), 600):
            receiver.feed(body[i : i + 600])
    assert caught.value.kind == "disk_full"
    receiver.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("body", "why"), [
    (b"", "ended early"),
    (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="print"\r\n\r\ntrue\r\n'
     f"--{BOUNDARY}--\r\n".encode(),
     "has no `file` field"),
])  # fmt: skip
def test_a_body_without_a_file_is_bad_form(tmp_path: Path, body: bytes, why: str) -> None:
    with pytest.raises(UploadRefused, match=why):
        receive(tmp_path, body, 100).finish()


def test_two_files_are_refused(tmp_path: Path) -> None:
    one, _ = prusaslicer_body(b"G28\n", "a.gcode", boundary=BOUNDARY)
    two = one.replace(f"--{BOUNDARY}--\r\n".encode(), b"") + one.split(b"\r\n", 1)[0] + b"\r\n" + \
        b'Content-Disposition: form-data; name="file"; filename="b.gcode"\r\n\r\nG28\r\n' + \
        f"--{BOUNDARY}--\r\n".encode()
    with pytest.raises(UploadRefused, match="more than one `file`"):
        receive(tmp_path, two, 50)


def test_a_field_longer_than_4_kib_is_refused(tmp_path: Path) -> None:
    body, _ = prusaslicer_body(b"G28\n", "a.gcode", path="a" * 5000, boundary=BOUNDARY)
    with pytest.raises(UploadRefused, match="'path' is longer than 4 KiB"):
        receive(tmp_path, body, 1000)


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", "text/plain; boundary=x",
                                          "multipart/form-data; boundary=" + "x" * 71])
def test_only_multipart_with_a_boundary(content_type: str) -> None:
    with pytest.raises(UploadRefused, match="expected multipart/form-data"):
        boundary_of(content_type)


def test_names_and_folders() -> None:
    assert check_name("Benchy 0.2mm PLA.gcode") == "Benchy 0.2mm PLA.gcode"
    assert check_folder("") == "" and check_folder("/") == ""
    assert check_folder("ada//brackets/") == "ada/brackets"
    for bad in ("", ".hidden.gcode", "a/b.gcode", "a\\b.gcode", "C:x.gcode", "x" * 201, "a\x7fb"):
        with pytest.raises(UploadRefused):
            check_name(bad)


def test_sniff_lets_gcode_with_a_bom_or_a_cut_character_pass() -> None:
    sniff(b"\xef\xbb\xbf; generated by PrusaSlicer\nG28\n", "a.gcode")
    sniff(("; é" * 200).encode()[:512], "a.gcode")  # a two-byte character cut at the sniff's end


def test_leftovers_of_a_crash_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".incoming-dead.part").write_bytes(b"G28\n")
    (tmp_path / "1234-benchy.gcode").write_bytes(b"G28\n")
    assert remove_leftovers(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["1234-benchy.gcode"]
