"""genrec.tokenizer.io: the one atomic-write module (re-exported by genrec.training.checkpoint)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from genrec.tokenizer import io


def test_writes_land_whole_and_leave_no_temporary_files(tmp_path):
    obj = {"b": [1, 2], "a": "é"}
    io.atomic_write_json(tmp_path / "sub" / "x.json", obj)
    assert (tmp_path / "sub" / "x.json").read_bytes() == (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    io.atomic_save_json(obj, tmp_path / "y.json")  # the older name, object first
    assert (tmp_path / "y.json").read_bytes() == (tmp_path / "sub" / "x.json").read_bytes()
    io.atomic_write_text(tmp_path / "t.txt", "line\n")
    io.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    io.atomic_save_safetensors({"w": torch.arange(6).reshape(2, 3).t()}, tmp_path / "w.safetensors", metadata={"k": "v"})
    assert (tmp_path / "t.txt").read_text() == "line\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert torch.equal(load_file(tmp_path / "w.safetensors")["w"], torch.arange(6).reshape(2, 3).t())

    def broken(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.atomic_write_file(tmp_path / "t.txt", broken)
    assert (tmp_path / "t.txt").read_text() == "line\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []


def test_folders_are_swapped_or_published(tmp_path):
    final = tmp_path / "run"
    for content in ("old", "new"):
        tmp = io.new_tmp_dir(final)
        (tmp / "f").write_text(content)
        io.replace_dir(tmp, final)
        assert (final / "f").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "f").write_text("published")
    (final / "log").write_text("kept")
    io.publish_dir(staging, final, ["f"])  # non-empty target: files move one by one, others stay
    assert (final / "f").read_text() == "published" and (final / "log").read_text() == "kept"


def test_checkpoint_reexports_the_same_helpers():
    from genrec.training import checkpoint

    for name in ("atomic_write_text", "atomic_write_json", "atomic_write_bytes", "new_tmp_dir", "replace_dir"):
        assert getattr(checkpoint, name) is getattr(io, name)


def test_mode_sets_the_permissions(tmp_path):
    io.atomic_write_text(tmp_path / "private", "x")
    io.atomic_write_json(tmp_path / "shared.json", [1], mode=0o644)
    io.atomic_write_file(tmp_path / "shared.bin", lambda tmp: open(tmp, "wb").close(), mode=0o644)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600  # mkstemp's default, as before
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644 == (tmp_path / "shared.bin").stat().st_mode & 0o777
