"""Hostile package folders (issue 16, items 1, 6 and 7): every input file is a regular file
inside the package folder, URIs carry no control characters, and the output folder never holds
an input file. Each refusal is one line, a documented exit status, and no output at all."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from .conftest import KEY, KEYSPEC, cli, copy_tree

pytestmark = pytest.mark.timeout(300)

SECRET = b"OUTSIDE-THE-PACKAGE-" * 64  # a file outside the package that must never be read


def _run(manifest: Path, out: Path, *extra: str, scheme: str = "aes-128"
         ) -> tuple[int, str, float]:
    t0 = time.monotonic()
    res = cli("encrypt-vod", str(manifest), "-o", str(out), "--scheme", scheme, "--key", KEYSPEC,
              "--key-uri", "https://k/key", *extra, timeout=60)
    assert KEY.hex() not in res.stderr + res.stdout
    return res.returncode, res.stderr, time.monotonic() - t0


def _refused(rc: int, err: str, code: int, *words: str) -> None:
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("speke-packager: error: "), err
    for w in words:
        assert w in lines[0], lines[0]


def _nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]


def _hls_ts(packages, tmp_path: Path) -> Path:
    return copy_tree(packages("hls-ts").parent, tmp_path / "pkg") / "index.m3u8"


def _outside(tmp_path: Path) -> Path:
    p = tmp_path / "elsewhere" / "private.ts"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(SECRET)
    return p


# ---- item 1: symbolic links, devices, FIFOs, sockets, folders ----------------------------------

@pytest.mark.parametrize("clear_lead", [False, True], ids=["encrypted", "clear-lead"])
def test_segment_symlink_leaving_the_package(packages, tmp_path: Path, clear_lead: bool) -> None:
    """A segment that is a link to a file outside the package is refused: before, it was
    encrypted (or, inside --clear-lead, copied verbatim) into the output."""
    manifest = _hls_ts(packages, tmp_path)
    seg = manifest.parent / "seg_001.ts"
    seg.unlink()
    seg.symlink_to(_outside(tmp_path))
    out = tmp_path / "out"
    extra = ("--clear-lead", "100") if clear_lead else ()
    rc, err, _ = _run(manifest, out, *extra)
    _refused(rc, err, 4, "seg_001.ts", "outside the package folder")
    _nothing_written(tmp_path, out)


def test_folder_symlink_leaving_the_package(packages, tmp_path: Path) -> None:
    manifest = _hls_ts(packages, tmp_path)
    (tmp_path / "elsewhere").mkdir()
    shutil.move(manifest.parent / "seg_002.ts", tmp_path / "elsewhere" / "seg_002.ts")
    (manifest.parent / "sub").symlink_to(tmp_path / "elsewhere")
    manifest.write_text(manifest.read_text().replace("seg_002.ts", "sub/seg_002.ts"))
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out)
    _refused(rc, err, 4, "sub/seg_002.ts", "outside the package folder")
    _nothing_written(tmp_path, out)


def test_symlink_inside_the_package_is_followed(packages, tmp_path: Path) -> None:
    """Control: a link that stays inside the package folder is an ordinary segment."""
    manifest = _hls_ts(packages, tmp_path)
    (manifest.parent / "real").mkdir()
    shutil.move(manifest.parent / "seg_001.ts", manifest.parent / "real" / "seg_001.ts")
    (manifest.parent / "seg_001.ts").symlink_to("real/seg_001.ts")
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out)
    assert rc == 0, err
    assert (out / "seg_001.ts").is_file() and not (out / "seg_001.ts").is_symlink()


def test_dev_zero_segment(packages, tmp_path: Path) -> None:
    """Before: a MemoryError traceback (reading /dev/zero to its 'end')."""
    manifest = _hls_ts(packages, tmp_path)
    (manifest.parent / "zero.ts").symlink_to("/dev/zero")
    manifest.write_text(manifest.read_text().replace("seg_002.ts", "zero.ts"))
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out)
    # /dev/zero is outside the package, and a device besides: either reason is named
    _refused(rc, err, 4, "zero.ts")
    _nothing_written(tmp_path, out)


def test_device_inside_the_package(tmp_path: Path) -> None:
    """A device node inside the folder (bind mounts, containers): refused as a device."""
    from speke_packager._io import open_input
    from speke_packager.errors import UnsafeInputError

    with pytest.raises(UnsafeInputError, match="a device"):
        open_input("/dev", "null", what="segment")


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_special_segment(packages, tmp_path: Path, kind: str) -> None:
    """A FIFO used to hang the run until killed; a folder or socket gave an OS error."""
    manifest = _hls_ts(packages, tmp_path)
    seg = manifest.parent / "seg_001.ts"
    seg.unlink()
    sock = None
    if kind == "fifo":
        os.mkfifo(seg)
    elif kind == "folder":
        seg.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(seg))
    try:
        out = tmp_path / "out"
        rc, err, took = _run(manifest, out)
    finally:
        if sock is not None:
            sock.close()
    word = {"fifo": "FIFO", "socket": "socket", "folder": "folder"}[kind]
    _refused(rc, err, 4, "seg_001.ts", word, "not a regular file")
    assert took < 30
    _nothing_written(tmp_path, out)


def test_init_section_symlink_leaving_the_package(packages, tmp_path: Path) -> None:
    manifest = copy_tree(packages("hls-fmp4").parent, tmp_path / "pkg") / "index.m3u8"
    init = manifest.parent / "init.mp4"
    outside = tmp_path / "elsewhere" / "init.mp4"
    outside.parent.mkdir()
    shutil.move(init, outside)
    init.symlink_to(outside)
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out, scheme="cbcs")
    _refused(rc, err, 4, "init.mp4", "outside the package folder")
    _nothing_written(tmp_path, out)


def test_dash_segment_symlink_leaving_the_package(packages, tmp_path: Path) -> None:
    manifest = copy_tree(packages("dash-number").parent, tmp_path / "pkg") / "manifest.mpd"
    seg = sorted(p for p in manifest.parent.iterdir() if p.name.startswith("chunk-"))[1]
    outside = _outside(tmp_path)
    seg.unlink()
    seg.symlink_to(outside)
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out, scheme="cenc")
    _refused(rc, err, 4, seg.name, "outside the package folder")
    _nothing_written(tmp_path, out)


def test_playlist_symlink_leaving_the_package(packages, tmp_path: Path) -> None:
    """The input's own folder is the package: a variant playlist linked from elsewhere is
    refused like a segment."""
    manifest = copy_tree(packages("hls-multivariant-ts").parent, tmp_path / "pkg") / "master.m3u8"
    variant = manifest.parent / "v0" / "index.m3u8"
    outside = tmp_path / "elsewhere" / "index.m3u8"
    outside.parent.mkdir()
    outside.write_text(variant.read_text())
    variant.unlink()
    variant.symlink_to(outside)
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out)
    _refused(rc, err, 4, "v0/index.m3u8", "outside the package folder")
    _nothing_written(tmp_path, out)


# ---- item 6: control characters in URIs ---------------------------------------------------------

@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"], ids=repr)
def test_control_character_in_segment_uri(packages, tmp_path: Path, char: str) -> None:
    """Before: ``ValueError: embedded null byte`` (a traceback) for a NUL."""
    manifest = _hls_ts(packages, tmp_path)
    manifest.write_text(manifest.read_text().replace("seg_001.ts", f"seg{char}_001.ts"))
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out)
    _refused(rc, err, 5, "control character")
    assert "Traceback" not in err
    _nothing_written(tmp_path, out)


def test_control_character_in_mpd_url(packages, tmp_path: Path) -> None:
    """XML 1.0 cannot carry a NUL; it can carry a tab or a percent-escape, which stay text.
    The shared resolver refuses control characters for DASH URLs as for HLS ones."""
    from speke_packager.errors import ManifestError
    from speke_packager.pipeline.hls_job import resolve

    with pytest.raises(ManifestError, match="control character"):
        resolve("manifest.mpd", "chunk\x00-1.m4s", what="segment")
    with pytest.raises(ManifestError, match="control character"):
        resolve("manifest.mpd", "chunk\t1.m4s", what="segment")
    assert resolve("a/manifest.mpd", "chunk%00-1.m4s", what="segment") == "a/chunk%00-1.m4s"


# ---- item 7: the output folder may not hold an input file ---------------------------------------

@pytest.mark.parametrize("force", [True, False], ids=["force", "no-force"])
def test_output_folder_holding_inputs_is_refused(packages, tmp_path: Path, force: bool) -> None:
    """``encrypt-vod IN/master.m3u8 -o IN/v0 --force`` used to replace IN/v0, the clear input
    of the first variant, with the encrypted output."""
    manifest = copy_tree(packages("hls-multivariant-ts").parent, tmp_path / "pkg") / "master.m3u8"
    v0 = manifest.parent / "v0"
    before = {p.name: p.read_bytes() for p in v0.iterdir()}
    rc, err, _ = _run(manifest, v0, *(("--force",) if force else ()))
    if force:
        _refused(rc, err, 2, "holds the input file", "v0/")
    else:  # refused as non-empty first, or as holding an input: either way nothing is touched
        assert rc in (2, 6), err
    assert {p.name: p.read_bytes() for p in v0.iterdir()} == before
    assert not [p.name for p in manifest.parent.iterdir() if p.name.startswith(".")]


def test_output_folder_reached_through_a_link_is_refused(packages, tmp_path: Path) -> None:
    manifest = copy_tree(packages("hls-multivariant-ts").parent, tmp_path / "pkg") / "master.m3u8"
    link = tmp_path / "v0-link"
    link.symlink_to(manifest.parent / "v0")
    before = sorted(p.name for p in (manifest.parent / "v0").iterdir())
    rc, err, _ = _run(manifest, link, "--force")
    _refused(rc, err, 2, "holds the input")
    assert sorted(p.name for p in (manifest.parent / "v0").iterdir()) == before


def test_output_inside_the_package_without_inputs_is_fine(packages, tmp_path: Path) -> None:
    """Control: an output folder inside the package folder that holds no input file."""
    manifest = _hls_ts(packages, tmp_path)
    out = manifest.parent / "encrypted"
    rc, err, _ = _run(manifest, out)
    assert rc == 0, err
    assert (out / "index.m3u8").is_file()
    # and a second run with --force over it: the output holds no input of this package
    rc, err, _ = _run(manifest, out, "--force")
    assert rc == 0, err


def test_deeply_nested_init_section(packages, tmp_path: Path) -> None:
    """An init.mp4 of 1,200 nested boxes: a RecursionError traceback before, now a bounded
    depth and one Mp4FormatError line (exit 4)."""
    import struct

    manifest = copy_tree(packages("hls-fmp4").parent, tmp_path / "pkg") / "index.m3u8"
    body = b""
    for _ in range(1200):
        body = struct.pack(">I4s", 8 + len(body), b"trak") + body
    moov = struct.pack(">I4s", 8 + len(body), b"moov") + body
    (manifest.parent / "init.mp4").write_bytes(struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
                                               + moov)
    out = tmp_path / "out"
    rc, err, _ = _run(manifest, out, scheme="cbcs")
    _refused(rc, err, 4, "nested deeper than")
    _nothing_written(tmp_path, out)


def test_media_file_input_may_be_a_link_but_not_a_fifo(media, tmp_path: Path) -> None:
    """A media file named on the command line may be a link (it is not part of a package);
    a FIFO named .mp4 is refused instead of blocking ffmpeg."""
    link = tmp_path / "movie.mp4"
    link.symlink_to(media("h264-aac-mp4"))
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(link), "-o", str(out), "--scheme", "cenc", "--format", "dash",
              "--key", KEYSPEC, timeout=120)
    assert res.returncode == 0, res.stderr
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    res = cli("encrypt-vod", str(fifo), "-o", str(tmp_path / "out2"), "--key", KEYSPEC,
              timeout=60)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out2").exists()
