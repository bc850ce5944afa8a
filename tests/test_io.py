"""detseg.io: output names taken from outside cannot leave the output folder (issue 17)."""

import os

import pytest

from detseg.io import safe_output_name, write_text


@pytest.mark.parametrize("name", ["../../escaped.png", "/etc/escaped.png", "..\\..\\escaped.png",
                                  "sub/../../escaped.png", "C:\\Windows\\escaped.png",
                                  "./escaped.png", "%2e%2e/escaped.png"])
def test_traversal_names_stay_inside(tmp_path, name):
    out = tmp_path / "out"
    path = safe_output_name(out, name)
    assert path == out / "escaped.png"
    write_text(path, "x")
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "out/escaped.png"]


def test_plain_names_are_kept(tmp_path):
    assert safe_output_name(tmp_path, "street 1.png") == tmp_path / "street 1.png"
    assert safe_output_name(tmp_path, "...png") == tmp_path / "...png"  # dots, but a real name


@pytest.mark.parametrize("name", ["", ".", "..", "a/..", "/", "x\x00.png", "x\n.png"])
def test_unusable_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="output name"):
        safe_output_name(tmp_path, name)


def test_planted_symlink_is_refused(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside.png"
    out.mkdir()
    outside.write_text("keep")
    os.symlink(outside, out / "a.png")
    with pytest.raises(ValueError, match="would leave the output folder"):
        safe_output_name(out, "../a.png")
    assert outside.read_text() == "keep"


def test_atomic_writes_get_the_umask_mode_not_mkstemps_private_one(tmp_path):
    import os
    import stat

    from detseg import io

    io.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~io._umask()
    assert io._umask() == os.umask(io._umask())  # the process umask is left as it was
