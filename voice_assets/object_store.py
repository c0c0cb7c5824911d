"""A store that machines share: the home's files in an object store (S3, GCS, ...) via fsspec.

With ``VOICE_ASSETS_STORE=s3://bucket/prefix`` (any fsspec URL: ``gs://`` with gcsfs, a
``file://`` path on a shared mount) each machine's ``$VOICE_ASSETS_HOME`` is its local working
copy of the store, and the store is the truth:

* **writes** go through: every file an asset commits under the home (``atomic_path`` /
  ``atomic_dir``: episode WAVs, stems, clips, exports, Parquet tables, ledger parts, pulled
  models) is uploaded to ``<store>/<path under the home>`` before the step succeeds. An
  upload is a single PUT, so readers see the whole file or none;
* **reads** come back: files named by an upstream table's ``*_path`` columns, the Parquet table
  folders and the models a step loads are fetched when absent (or older) locally.

Tables hold absolute paths, so every machine uses the same ``VOICE_ASSETS_HOME`` path (the
code-location image's ``/data``). Credentials come from the library's usual places (for S3:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for S3-compatible
servers, an instance role). No dagster here: the IO managers and assets call these functions.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_assets.errors import StoreError

STORE_ENV = "VOICE_ASSETS_STORE"


@dataclass(frozen=True)
class ObjectStore:
    url: str
    home: Path
    fs: Any  # fsspec.AbstractFileSystem
    root: str

    @classmethod
    def open(cls, url: str, home: Path) -> ObjectStore:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        return cls(url, Path(home).resolve(), fs, root.rstrip("/"))

    def key(self, path: Path) -> str | None:
        """The object key of a local path under the home; None for a path outside it."""
        try:
            rel = Path(path).resolve().relative_to(self.home)
        except ValueError:
            return None
        return f"{self.root}/{rel.as_posix()}" if str(rel) != "." else self.root

    def local(self, key: str) -> Path:
        """The local path of an object key (the inverse of ``key``)."""
        return self.home / key[len(self.root) + 1:]

    def upload(self, path: Path, *, skip_unchanged: bool = False) -> None:
        """Put a committed file, or every file of a committed folder, at its key.
        ``skip_unchanged``: not when the stored copy has the same size and is not older (a
        re-ingested episode's unchanged video is not sent again)."""
        key = self.key(path)
        if key is None:
            return
        try:
            if Path(path).is_dir():
                files = {f"{key}/{p.relative_to(path).as_posix()}": p
                         for p in Path(path).rglob("*") if p.is_file()}
                stale = set(self._remote_files(key)) - set(files)
                for name, p in files.items():
                    self.fs.put_file(str(p), name)
                for old in stale:  # a replaced folder loses the files it no longer has
                    self.fs.rm_file(old)
            else:
                info = self._info(key) if skip_unchanged else None
                if info is None or _differs(Path(path), info, newer_local=True):
                    self.fs.put_file(str(path), key)
        except Exception as exc:  # botocore's errors are no OSErrors
            raise StoreError(f"could not upload {path} to {self.url}: {exc}") from exc

    def fetch(self, path: Path, *, refresh: bool = False) -> bool:
        """Bring the file at ``path`` from the store when it is missing locally (or, with
        ``refresh``, when the stored one differs in size or is newer). True if fetched."""
        key = self.key(path)
        local = Path(path)
        if key is None or (local.exists() and not refresh):  # no round trip to the store
            return False
        info = self._info(key)
        if info is None or info.get("type") == "directory":
            return False
        if local.exists() and not _differs(local, info):
            return False
        self._download(key, local)
        return True

    def fetch_tree(self, folder: Path) -> int:
        """Bring every stored file under ``folder`` that is missing or changed locally."""
        key = self.key(folder)
        if key is None:
            return 0
        fetched = 0
        for name, info in self._remote_files(key).items():
            local = self.local(name)
            if not local.exists() or _differs(local, info):
                self._download(name, local)
                fetched += 1
        return fetched

    def fetch_glob(self, folder: Path, pattern: str) -> int:
        """Bring the stored files under ``folder`` that match ``pattern`` (a glob relative
        to it) and are missing or changed locally."""
        key = self.key(folder)
        if key is None:
            return 0
        self.fs.invalidate_cache(key)
        try:
            names = self.fs.glob(f"{key}/{pattern}")
        except Exception as exc:  # botocore's errors are no OSErrors
            raise StoreError(f"could not list {key}/{pattern} in {self.url}: {exc}") from exc
        return sum(self.fetch(self.local(name), refresh=True) for name in names)

    def _remote_files(self, key: str) -> dict[str, dict[str, Any]]:
        self.fs.invalidate_cache(key)  # other machines write: never a cached listing
        try:
            found = self.fs.find(key, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # botocore's errors are no OSErrors
            raise StoreError(f"could not list {key} in {self.url}: {exc}") from exc
        return {name.rstrip("/"): info for name, info in found.items()
                if info.get("type") != "directory"}

    def _info(self, key: str) -> dict[str, Any] | None:
        self.fs.invalidate_cache(key)
        try:
            return dict(self.fs.info(key))
        except FileNotFoundError:
            return None
        except Exception as exc:  # botocore's errors are no OSErrors
            raise StoreError(f"could not reach {key} in {self.url}: {exc}") from exc

    def _download(self, key: str, local: Path) -> None:
        """Into a temp file beside the target, then rename: never a half file in the home.
        (Not atomic.atomic_path: that would upload the file straight back.)"""
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
        os.close(fd)
        try:
            self.fs.get_file(key, tmp)
            os.replace(tmp, local)
        except Exception as exc:  # botocore's errors are no OSErrors
            raise StoreError(f"could not fetch {key} from {self.url}: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)


def _differs(local: Path, info: dict[str, Any], newer_local: bool = False) -> bool:
    """The local and stored copies differ: in size, or one was written after the other
    (the stored one after the local, or with ``newer_local`` the local after the stored)."""
    stat = local.stat()
    if info.get("size") is not None and int(info["size"]) != stat.st_size:
        return True
    stamp = info.get("mtime", info.get("LastModified", info.get("updated")))
    if hasattr(stamp, "timestamp"):
        stamp = stamp.timestamp()
    try:
        remote = float(stamp)
    except (TypeError, ValueError):
        return newer_local  # no time to compare: upload again rather than keep a stale copy
    return stat.st_mtime > remote + 1.0 if newer_local else remote > stat.st_mtime + 1.0


_OPEN: dict[tuple[str, str], ObjectStore] = {}
_LOCK = threading.Lock()


def current() -> ObjectStore | None:
    """The store $VOICE_ASSETS_STORE names for this process's home; None when unset."""
    url = os.environ.get(STORE_ENV, "").strip()
    if not url:
        return None
    from voice_assets.paths import default_home

    home = str(default_home().resolve())
    with _LOCK:
        if (url, home) not in _OPEN:
            _OPEN[(url, home)] = ObjectStore.open(url, Path(home))
        return _OPEN[(url, home)]


def committed(path: Path) -> None:
    """Called by every atomic write once ``path`` is in place: upload it to the store."""
    store = current()
    if store is not None:
        store.upload(path)


def ensure_local(paths: Iterable[str | Path | None]) -> int:
    """Fetch each named file under the home that is missing locally; the count fetched."""
    store = current()
    if store is None:
        return 0
    return sum(store.fetch(Path(p)) for p in paths if p)


def ensure_tree(folder: Path) -> int:
    """Fetch every stored file under ``folder`` that is missing or changed locally."""
    store = current()
    return store.fetch_tree(folder) if store is not None else 0


def ensure_glob(folder: Path, pattern: str) -> int:
    """Fetch the stored files under ``folder`` matching ``pattern`` that are missing or
    changed locally (a series' characters.yaml, written on the machine with the inbox)."""
    store = current()
    return store.fetch_glob(folder, pattern) if store is not None else 0
