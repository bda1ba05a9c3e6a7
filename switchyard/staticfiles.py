"""The static files storage: content-hashed names, each compressed once.

servestatic's CompressedManifestStaticFilesStorage, which collectstatic fills
(`make run`, `make test` and the Docker build run it) and whose manifest
servestatic serves from, with three changes:

- Only the content-hashed copies are compressed: pages link those alone
  (`{% static %}`). The copies under their plain names stay, served
  uncompressed, for whatever asks for a file by that name.
- A content-hashed copy never changes, so what was compressed of it is kept:
  collectstatic compresses only new content (brotli takes ~10 s over
  plotly.min.js), and a run with nothing new takes about a second.
- Files are written whole under a temporary name, then renamed over their
  own: a compressed file that exists is complete, even after an interrupted
  run, and a process that starts while another collects (a second suite in
  the same checkout) reads the old manifest or the new one, never none or half.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.files.base import File
from servestatic.compress import Compressor
from servestatic.storage import CompressedManifestStaticFilesStorage


def _partial_name(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex}.partial"


class _CompressorOfHashedFiles(Compressor):
    """Compresses a file whose name carries its content's hash, unless done before."""

    def compress(self, path: str | os.PathLike[str]) -> list[str]:
        path = os.fspath(path)
        outputs = [
            path + suffix
            for suffix, wanted in ((".zstd", self.use_zstd), (".br", self.use_brotli), (".gz", self.use_gzip))
            if wanted
        ]
        # A kind that did not shrink the file was never written: such a file
        # (a small one) is compressed again each run, to the same end.
        if outputs and all(os.path.exists(output) for output in outputs):
            return outputs
        return super().compress(path)

    @staticmethod
    def write_data(path: str, data: bytes, suffix: str, stat_result: os.stat_result) -> str:
        filename = path + suffix
        partial = _partial_name(filename)
        with open(partial, "xb") as file:
            file.write(data)
        os.utime(partial, (stat_result.st_atime, stat_result.st_mtime))
        os.replace(partial, filename)
        return filename


class Storage(CompressedManifestStaticFilesStorage):
    def compress_files(self, paths: set[str]) -> Iterator[tuple[str, str]]:
        return super().compress_files(paths & set(self.hashed_files.values()))

    def create_compressor(self, **kwargs: Any) -> Compressor:
        return _CompressorOfHashedFiles(**kwargs)

    def _save(self, name: str, content: File[Any]) -> str:
        # django-stubs leaves FileSystemStorage._save out.
        partial = super()._save(_partial_name(name), content)  # type: ignore[misc]
        os.replace(self.path(partial), self.path(name))
        return name

    def delete(self, name: str) -> None:
        # Django and servestatic delete the manifest before writing it anew;
        # _save replaces it whole instead.
        if name != self.manifest_name:
            super().delete(name)
