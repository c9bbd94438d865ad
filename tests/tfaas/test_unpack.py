"""Safe unpacking of uploaded archives and packing of bundles (no TensorFlow, no server)."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest

from mlaas4hep_nb.tfaas.names import check_name, valid_name
from mlaas4hep_nb.tfaas.pack import compatible_params, pack_bundle
from mlaas4hep_nb.tfaas.unpack import ArchiveError, TooLargeError, unpack


def tarball(members: list[tuple[str, bytes | None]], gz: bool = True, **special) -> bytes:
    """A tar with files (bytes) and folders (None); ``special`` maps names to TarInfo types."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in special.items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def zipball(members: list[tuple[str, bytes]], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def tree(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_unpack_tar_gz_plain_tar_and_zip(tmp_path):
    members = [("m", None), ("m/a.txt", b"a"), ("m/sub/b.bin", b"\x00" * 10)]
    assert unpack(tarball(members), tmp_path / "gz") == ["m"]
    assert unpack(tarball(members, gz=False), tmp_path / "tar") == ["m"]
    assert unpack(zipball([("m/a.txt", b"a"), ("m/sub/b.bin", b"\x00" * 10)]), tmp_path / "z") == [
        "m"
    ]
    for folder in ("gz", "tar", "z"):
        assert (tmp_path / folder / "m/a.txt").read_bytes() == b"a"
        assert (tmp_path / folder / "m/sub/b.bin").stat().st_size == 10


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (tarball([("m/ok", b"1"), ("../evil", b"x")]), "'..'"),
        (tarball([("m/ok", b"1"), ("m/../../evil", b"x")]), "'..'"),
        (tarball([("m/ok", b"1"), ("/tmp/evil-abs", b"x")]), "absolute"),
        (tarball([("m/ok", b"1")], link=(tarfile.SYMTYPE, "/etc/passwd")), "link"),
        (tarball([("m/ok", b"1")], hard=(tarfile.LNKTYPE, "m/ok")), "link"),
        (tarball([("m/ok", b"1")], dev=(tarfile.CHRTYPE, "")), "device"),
        (tarball([("m/ok", b"1")], fifo=(tarfile.FIFOTYPE, "")), "device"),
        (zipball([("m/ok", b"1"), ("../evil", b"x")]), "'..'"),
        (zipball([("m/ok", b"1"), ("/evil-abs", b"x")]), "absolute"),
        (zipball([("m/ok", b"1")], symlink="m/link"), "link"),
        (b"not an archive at all", "not a tar"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt"),
    ],
)
def test_unsafe_archives_write_nothing(tmp_path, data, why):
    dest = tmp_path / "staging" / "dest"
    with pytest.raises(ArchiveError, match=why):
        unpack(data, dest)
    assert not dest.exists() or tree(dest) == []
    assert tree(tmp_path) in ([], ["staging"], ["staging", "staging/dest"])


def test_traversal_does_not_escape(tmp_path):
    # the member that climbs out comes first: still nothing is written anywhere
    data = tarball([("../../escaped.txt", b"x"), ("m/ok", b"1")])
    with pytest.raises(ArchiveError):
        unpack(data, tmp_path / "a" / "b")
    assert list(tmp_path.rglob("escaped.txt")) == []


def test_decompression_bomb_is_too_large(tmp_path):
    data = tarball([("m/zeros", b"\x00" * 1_000_000)])
    assert len(data) < 5_000
    with pytest.raises(TooLargeError):
        unpack(data, tmp_path / "d", max_bytes=100_000)
    assert not (tmp_path / "d").exists()


def test_file_used_as_folder_is_refused(tmp_path):
    with pytest.raises(ArchiveError, match="below a file"):
        unpack(tarball([("m/a", b"1"), ("m/a/b", b"2")]), tmp_path / "d")


@pytest.mark.parametrize("name", ["tth", "ttH_v2.1", "a-b_c.d", "x" * 128])
def test_valid_names(name):
    assert valid_name(name)
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "a b", "é", "x" * 129, None, 3])
def test_invalid_names(name):
    assert not valid_name(name)
    with pytest.raises(ValueError, match="invalid model name"):
        check_name(name)


def test_pack_bundle_names_the_top_folder_and_writes_both_spellings(tmp_path):
    bundle = tmp_path / "folder"
    (bundle / "variables").mkdir(parents=True)
    (bundle / "saved_model.pb").write_bytes(b"pb")
    (bundle / "variables" / "variables.index").write_bytes(b"ix")
    params = {"name": "old", "input_node": "serving_default_inputs", "outputNode": "out"}
    (bundle / "params.json").write_text(json.dumps(params))
    name, data = pack_bundle(bundle, "new")
    assert name == "new"
    out = tmp_path / "out"
    assert unpack(data, out) == ["new"]
    assert tree(out / "new") == [
        "params.json",
        "saved_model.pb",
        "variables",
        "variables/variables.index",
    ]
    packed = json.loads((out / "new" / "params.json").read_text())
    assert packed["name"] == "new"
    assert packed["inputNode"] == packed["input_node"] == "serving_default_inputs"
    assert packed["output_node"] == packed["outputNode"] == "out"
    assert compatible_params({}, "m")["op"] == "serving_default"


def test_the_client_does_not_import_tensorflow():
    code = (
        "import sys, mlaas4hep_nb as mn, mlaas4hep_nb.tfaas.client; mn.TFaaSClient('http://h'); "
        "mn.tfaas.TFaaSError; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
