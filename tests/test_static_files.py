"""Static files: linked under content-hashed names, sent compressed, cached for good (switchyard/staticfiles.py)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import brotli
import httpx
import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

HASHED = re.compile(r"/static/.+\.[0-9a-f]{12}\.[^./]+")


def linked_static_files(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/"])
def test_every_static_file_a_page_links_is_content_hashed_compressed_and_cached_for_good(
    admin_client: Client, client: Client, gateway_url: str, path: str
) -> None:
    html = (admin_client if path == "/admin/" else client).get(path).content.decode()
    urls = linked_static_files(html)
    assert urls

    with httpx.Client(base_url=gateway_url, headers={"Accept-Encoding": "br, gzip"}) as http:
        for url in urls:
            assert HASHED.fullmatch(url), f"{url} carries no content hash"
            with http.stream("GET", url) as response:
                sent = b"".join(response.iter_raw())
            assert response.status_code == 200, url
            assert response.headers["content-encoding"] == "br", url
            assert response.headers["vary"] == "Accept-Encoding"
            assert "immutable" in response.headers["cache-control"], url
            # The collected copy: a stylesheet's is the source with its url()s turned to hashed names.
            collected = Path(staticfiles_storage.path(url.removeprefix("/static/")))
            assert brotli.decompress(sent) == collected.read_bytes(), url


def collect(source: Path, root: Path) -> dict[str, str]:
    """collectstatic of the files in `source` alone into `root`; the manifest's names."""
    with override_settings(
        STATICFILES_DIRS=[source],
        STATICFILES_FINDERS=["django.contrib.staticfiles.finders.FileSystemFinder"],
        STATIC_ROOT=root,
    ):
        call_command("collectstatic", interactive=False, verbosity=0)
    paths: dict[str, str] = json.loads((root / "staticfiles.json").read_text())["paths"]
    return paths


def test_collectstatic_compresses_new_content_once_and_a_changed_file_under_a_new_name(tmp_path: Path) -> None:
    source, root = tmp_path / "source", tmp_path / "root"
    source.mkdir()
    (source / "app.js").write_text("console.log('first');\n" * 100)
    (source / "lib.js").write_text("console.log('lib');\n" * 100)

    first = collect(source, root)
    compressed_lib = {suffix: (root / f"{first['lib.js']}{suffix}").stat().st_ino for suffix in (".br", ".gz")}
    (source / "app.js").write_text("console.log('second');\n" * 100)
    second = collect(source, root)

    assert second["lib.js"] == first["lib.js"]
    # Not written again: a rewrite would be a new file (written whole, then renamed).
    assert {suffix: (root / f"{first['lib.js']}{suffix}").stat().st_ino for suffix in (".br", ".gz")} == compressed_lib
    assert second["app.js"] != first["app.js"]
    new_app = root / second["app.js"]
    assert new_app.read_text() == (source / "app.js").read_text()
    assert brotli.decompress((root / f"{second['app.js']}.br").read_bytes()) == new_app.read_bytes()
    assert gzip.decompress((root / f"{second['app.js']}.gz").read_bytes()) == new_app.read_bytes()
    # Pages link the hashed names alone: the plain copies are not compressed, and nothing is left half-written.
    assert not list(root.glob("app.js.*")) and not list(root.glob("lib.js.*"))
    assert not list(root.rglob("*.partial"))
