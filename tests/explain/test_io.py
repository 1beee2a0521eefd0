import ast
import os
import stat
from pathlib import Path

import pytest

import explain.io
from explain.io import atomic_write_bytes, atomic_write_text


def _umask() -> int:
    umask = os.umask(0)  # fine in a test: the library itself never touches the umask
    os.umask(umask)
    return umask


def test_writes_whole_file_with_normal_permissions(tmp_path):
    umask = _umask()
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert [q.name for q in p.parent.iterdir()] == ["a.txt"]


def test_mode_follows_the_current_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640


def test_overwrites_an_existing_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old contents")
    assert atomic_write_bytes(p, b"new") == p
    assert p.read_bytes() == b"new"
    assert [q.name for q in tmp_path.iterdir()] == ["a.bin"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(p, object())  # not bytes: the write fails mid-way
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.bin"]


def test_failed_rename_leaves_no_part_file(tmp_path, monkeypatch):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    seen = []

    def fail(src, dst):
        seen.append(Path(src))
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename refused"):
        atomic_write_bytes(p, b"new")
    # the temporary file was written beside the target, then removed
    assert len(seen) == 1 and seen[0].parent == tmp_path and seen[0].name.endswith(".part")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.bin"]


def test_temp_names_are_unique(tmp_path, monkeypatch):
    names = []
    real_replace = os.replace

    def record(src, dst):
        names.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", record)
    for _ in range(5):
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert len(set(names)) == 5 and all(n.startswith(".a.bin.") for n in names)


def test_never_touches_the_process_umask():
    tree = ast.parse(Path(explain.io.__file__).read_text())
    calls = [
        ast.unparse(n.func)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "umask"
    ]
    assert calls == []
    assert "umask(" not in Path(explain.io.__file__).read_text()


def test_exclusive_folder_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    from explain.io import FolderBusyError, exclusive_folder

    folder = tmp_path / "out"
    with exclusive_folder(folder) as held:
        assert held == folder and folder.is_dir()
        with pytest.raises(FolderBusyError, match=r"out is being written by another run"), exclusive_folder(folder):
            pass
    with exclusive_folder(folder):  # released on exit
        (folder / "kept").write_text("x")
    assert [p.name for p in folder.iterdir()] == ["kept"]  # no lock file left behind
    with exclusive_folder(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # created and left empty: removed
