"""A package index read through its JSON Simple API (PEP 691), with an on-disk cache and bounded waits.

`PackageIndex.files(name)` lists a project's files (filename, requires-python, yanked) or None when the
index has no such project. Network trouble raises `IndexUnavailable`; callers turn it into a note. An
index answering only HTML (PEP 503) is read too. Credentials in an index URL never appear in messages:
use `display_url`.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import requests
from packaging.utils import canonicalize_name

from imagefactory.files import atomic_write

DEFAULT_INDEX = "https://pypi.org/simple"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
INDEX_ENV = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
USERINFO = re.compile(r"(?<=://)[^/@]+@")


class IndexUnavailable(Exception):
    """The index could not be reached or answered garbage; the message holds no credentials."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    requires_python: str | None = None
    yanked: bool = False


def redact(url: str) -> str:
    return USERINFO.sub("***@", url)


class PackageIndex:
    """One index URL; `cache_dir` (optional) keeps answers for `ttl` seconds; `timeout` is (connect, read)."""

    def __init__(self, url: str = DEFAULT_INDEX, *, cache_dir: Path | None = None,
                 timeout: tuple[float, float] = (5.0, 5.0), ttl: float = 7 * 86400) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.ttl = ttl
        self._session = requests.Session()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, *,
                         cache_dir: Path | None = None) -> PackageIndex:
        """The index the user configured for uv or pip (UV_DEFAULT_INDEX, UV_INDEX_URL, PIP_INDEX_URL)."""
        env = os.environ if env is None else env
        url = next((env[k] for k in INDEX_ENV if env.get(k)), DEFAULT_INDEX)
        return cls(url.split()[0], cache_dir=cache_dir)

    def with_url(self, url: str) -> PackageIndex:
        return PackageIndex(url, cache_dir=self.cache_dir, timeout=self.timeout, ttl=self.ttl)

    @property
    def display_url(self) -> str:
        return redact(self.url)

    def files(self, name: str) -> tuple[IndexFile, ...] | None:
        project = canonicalize_name(name)
        cached = self._cache_read(project)
        if cached is not None:
            return _decode(cached)
        data = self._fetch(project)
        self._cache_write(project, data)
        return _decode(data)

    def _fetch(self, project: str) -> dict[str, Any]:
        url = f"{self.url}/{project}/"
        try:
            resp = self._session.get(url, timeout=self.timeout,
                                     headers={"Accept": f"{JSON_TYPE}, text/html;q=0.1"})
        except requests.RequestException as exc:
            raise IndexUnavailable(f"{self.display_url} unreachable ({type(exc).__name__})") from None
        if resp.status_code == 404:
            return {"missing": True}
        if resp.status_code != 200:
            raise IndexUnavailable(f"{self.display_url} answered HTTP {resp.status_code} for {project}")
        if resp.headers.get("Content-Type", "").startswith("text/html"):
            return {"files": _parse_html(resp.text)}
        try:
            files = resp.json().get("files", [])
            return {"files": [{"filename": f["filename"], "requires-python": f.get("requires-python"),
                               "yanked": bool(f.get("yanked"))} for f in files]}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IndexUnavailable(f"{self.display_url} gave an unreadable answer for {project}") from None

    def _cache_path(self, project: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return Path(self.cache_dir) / key / f"{project}.json"

    def _cache_read(self, project: str) -> dict[str, Any] | None:
        path = self._cache_path(project)
        if path is None or not path.is_file() or time.time() - path.stat().st_mtime > self.ttl:
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _cache_write(self, project: str, data: dict[str, Any]) -> None:
        path = self._cache_path(project)
        if path is None:
            return
        atomic_write(path, json.dumps(data))


def _decode(data: dict[str, Any]) -> tuple[IndexFile, ...] | None:
    if data.get("missing"):
        return None
    return tuple(IndexFile(f["filename"], f.get("requires-python"), bool(f.get("yanked")))
                 for f in data.get("files", []))


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[dict[str, Any]] = []
        self._attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._attrs is not None and data.strip():
            rp = self._attrs.get("data-requires-python")
            self.files.append({"filename": data.strip(), "requires-python": html.unescape(rp) if rp else None,
                               "yanked": "data-yanked" in self._attrs})
            self._attrs = None


def _parse_html(text: str) -> list[dict[str, Any]]:
    parser = _Anchors()
    parser.feed(text)
    return parser.files
