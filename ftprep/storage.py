"""Where files live, one way: local paths and fsspec URLs (s3://, gs://, file://) named, opened, hashed and written.

Every task that reads or writes a dataset or an output goes through here, so a URL works wherever a path does.
A ``file://`` URL is a local path (it gets today's local behaviour exactly); any other scheme is opened with
fsspec, whose package for the scheme (s3fs for ``s3://``, gcsfs for ``gs://``) must be installed. S3 settings
come from the standard AWS variables and config files (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, keys, region),
which s3fs/aiobotocore read themselves. Errors of the store (no such bucket or key, no credentials, an endpoint
that does not answer) become one-line :class:`~ftprep.errors.InputError`\\ s naming the option and what to do.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from ftprep.errors import InputError
from ftprep.fsio import CHUNK, atomic_write, file_digests, file_problem, sha256_file

# The package that gives fsspec each scheme, as `pip install` wants it.
PACKAGES = {"s3": "'ftprep[s3]' (s3fs)", "s3a": "'ftprep[s3]' (s3fs)", "gs": "gcsfs", "gcs": "gcsfs",
            "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
_AWS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL for a store "
             "other than AWS")


def is_url(ref: str | os.PathLike | None) -> bool:
    """A URL for fsspec (``s3://…``, ``gs://…``); False for a plain path and for ``file://`` (a local path)."""
    return ref is not None and "://" in str(ref) and not str(ref).startswith("file://")


def scheme(ref: str) -> str:
    return str(ref).split("://", 1)[0].lower()


def _for(option: str) -> str:
    return f" given to {option}" if option else ""


def normalize(ref: str | os.PathLike, option: str = "") -> str:
    """The one spelling of a location: an absolute local path (cached results must not depend on the folder a run
    starts in; ``file://`` URLs become paths), or the URL without a trailing slash (its scheme's package checked)."""
    text = os.fspath(ref)
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"{text}: a file:// URL names a file on this machine (file:///path); give a local path"
                             f"{_for(option)}")
        text = unquote(parts.path)
    if is_url(text):
        filesystem(text, option)  # one line now if the scheme's package is missing
        return text.rstrip("/")
    return str(Path(text).resolve())


def join(base: str | os.PathLike, *names: str) -> str:
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *names])
    return os.path.join(base, *names)


def parent(ref: str | os.PathLike) -> str:
    return str(ref).rstrip("/").rsplit("/", 1)[0] if is_url(ref) else str(Path(ref).parent)


def name(ref: str | os.PathLike) -> str:
    return str(ref).rstrip("/").rsplit("/", 1)[-1] if is_url(ref) else Path(ref).name


def suffix(ref: str | os.PathLike) -> str:
    return os.path.splitext(name(ref))[1]


# ------------------------------------------------------------------------------------------ filesystems
_fs_lock = threading.Lock()
_fs_cache: dict[tuple, Any] = {}


def _settings_key() -> tuple:
    """The environment a filesystem was made with: a changed endpoint or key makes a new one."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "AZURE_"))))


def filesystem(url: str, option: str = "") -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for ``url``; one line saying what to install when the scheme's
    package is missing. Listings are not cached: another run may have written since."""
    import fsspec

    proto = scheme(url)
    key = (proto, _settings_key())
    with _fs_lock:
        fs = _fs_cache.get(key)
        if fs is None:
            try:
                cls = fsspec.get_filesystem_class(proto)
            except ImportError:
                raise InputError(f"{url}{_for(option)}: {proto}:// needs a package that is not installed; "
                                 f"pip install {PACKAGES.get(proto, 'the fsspec backend for ' + proto)}") from None
            except ValueError:
                raise InputError(f"{url}{_for(option)}: unknown URL scheme {proto}://; give a local path or an "
                                 "s3://, gs:// or file:// URL") from None
            fs = cls(use_listings_cache=False, skip_instance_cache=True)
            _fs_cache[key] = fs
    return fs, fs._strip_protocol(url)


def _named(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def store_error(e: BaseException, ref: str, option: str = "", doing: str = "read") -> InputError | None:
    """The one-line error for a failure of the store at ``ref`` (None for a failure that is not the store's)."""
    names = _named(e)
    text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    what = f"{ref}{_for(option)}"
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return InputError(f"{what}: no credentials for {scheme(ref)}://; {_AWS_HINT}")
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ServerTimeoutError",
                "ConnectionError", "ConnectionRefusedError", "ClientOSError", "TimeoutError"}:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") if scheme(ref).startswith("s3") else None
        where = f"the endpoint {endpoint} (AWS_ENDPOINT_URL)" if endpoint else "the store"
        return InputError(f"{what}: cannot reach {where} ({text}); check the address and the network")
    if isinstance(e, FileNotFoundError):
        missing = "bucket does not exist" if "bucket" in text.lower() else "does not exist"
        return InputError(f"{what}: {missing}; check the URL{_for(option)}")
    if isinstance(e, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return InputError(f"{what}: access denied ({text}); use credentials allowed to {doing} it")
    if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        return InputError(f"{what}: the store refused the credentials ({text}); {_AWS_HINT}")
    if isinstance(e, OSError) and not is_url(ref):
        return None
    if is_url(ref) and isinstance(e, (OSError, ValueError)) or "ClientError" in names:
        return InputError(f"{what}: cannot {doing} it ({type(e).__name__}: {text}); check the URL and the store")
    return None


@contextmanager
def store_errors(ref: str, option: str = "", doing: str = "read") -> Iterator[None]:
    """Turn the store's errors inside the block into one line (:func:`store_error`)."""
    try:
        yield
    except InputError:
        raise
    except Exception as e:
        err = store_error(e, str(ref), option, doing) if is_url(ref) else None
        if err is None:
            raise
        raise err from None


# ----------------------------------------------------------------------------------------------- read
def info(ref: str) -> dict:
    """``{"size", "mtime_ns", "etag"}`` of a file; raises the store's errors (FileNotFoundError for none)."""
    if not is_url(ref):
        st = os.stat(ref)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": str(st.st_ino)}
    fs, path = filesystem(ref)
    found = fs.info(path)
    if found.get("type") == "directory":
        raise IsADirectoryError(ref)
    modified = found.get("LastModified") or found.get("mtime") or found.get("updated")
    mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0
    return {"size": int(found.get("size") or 0), "mtime_ns": mtime_ns,
            "etag": str(found.get("ETag") or found.get("etag") or found.get("md5Hash") or "")}


def size(ref: str) -> int:
    return info(ref)["size"]


def problem(ref: str, option: str = "") -> str | None:
    """Why ``ref`` cannot be read as a file ("does not exist", "is a directory", ...), or None. Local files as
    :func:`ftprep.fsio.file_problem`; a URL's store errors other than a missing key raise one line."""
    if not is_url(ref):
        return file_problem(ref)
    with store_errors(ref, option):
        try:
            info(ref)
        except IsADirectoryError:
            return "is a folder (a prefix), not a file"
        except FileNotFoundError as e:
            if "bucket" in str(e).lower():
                raise
            return "does not exist"
    return None


def exists(ref: str) -> bool:
    if not is_url(ref):
        return os.path.exists(ref)
    fs, path = filesystem(ref)
    return fs.exists(path)


@contextmanager
def open_read(ref: str | os.PathLike, option: str = "") -> Iterator[IO[bytes]]:
    """The file, opened for streaming binary reads (a URL is read in blocks, never copied whole)."""
    if not is_url(ref):
        with open(ref, "rb") as f:
            yield f
        return
    ref = str(ref)
    with store_errors(ref, option):
        fs, path = filesystem(ref, option)
        f = fs.open(path, "rb", block_size=8 * CHUNK, cache_type="readahead")
    try:
        with store_errors(ref, option):
            yield f
    finally:
        f.close()


def digests(ref: str | os.PathLike, md5: bool = False) -> tuple[str, str | None]:
    """sha256 (and md5 if asked) of a file, computed while streaming it in 1 MiB chunks."""
    if not is_url(ref):
        return file_digests(ref, md5)
    sha, m5 = hashlib.sha256(), hashlib.md5() if md5 else None
    with open_read(ref) as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if m5 is not None:
                m5.update(chunk)
    return sha.hexdigest(), m5.hexdigest() if m5 is not None else None


def sha256(ref: str | os.PathLike) -> str:
    """The file's sha256 (the cache key of its content), remembered per (location, size, version) in a process."""
    if not is_url(ref):
        return sha256_file(ref)
    ref = str(ref)
    with store_errors(ref):
        found = info(ref)
    return _sha256_url(ref, found["size"], found["mtime_ns"], found["etag"])


@lru_cache(maxsize=64)
def _sha256_url(ref: str, size: int, mtime_ns: int, etag: str) -> str:
    return digests(ref)[0]


def read_bytes(ref: str | os.PathLike) -> bytes:
    with open_read(ref) as f:
        return f.read()


# ---------------------------------------------------------------------------------------------- write
@contextmanager
def open_write(ref: str | os.PathLike, option: str = "--out") -> Iterator[IO[bytes]]:
    """A new file, opened for streaming binary writes. On a store the object appears whole when the block ends
    (a multipart upload completed on close) or not at all."""
    if not is_url(ref):
        with open(ref, "xb", buffering=0) as f:
            yield f
        return
    ref = str(ref)
    with store_errors(ref, option, "write"):
        fs, path = filesystem(ref, option)
        f = fs.open(path, "wb", block_size=8 * CHUNK)
    ok = False
    try:
        with store_errors(ref, option, "write"):
            yield f
            f.close()  # the upload completes here: errors are the store's
        ok = True
    finally:
        if not ok:
            try:
                f.discard()  # abort the multipart upload, if one was started: nothing appears
            except Exception:  # noqa: BLE001 - best effort: an aborted upload leaves no object anyway
                pass
            f.closed = True  # never completed later by the garbage collector (close() would upload the part)


def write_bytes(ref: str | os.PathLike, data: bytes | str, option: str = "--out") -> None:
    """Write a small file whole: atomically on disk; one PUT on a store (readers see the old object or the new)."""
    payload = data.encode() if isinstance(data, str) else data
    if not is_url(ref):
        atomic_write(ref, payload)
        return
    ref = str(ref)
    with store_errors(ref, option, "write"):
        fs, path = filesystem(ref, option)
        fs.pipe_file(path, payload)


def copy(src: str, dst: str, option: str = "--out") -> None:
    """Copy within one store (server-side on S3)."""
    with store_errors(dst, option, "write"):
        fs, path = filesystem(src, option)
        fs.copy(path, filesystem(dst)[1])


def listdir(ref: str) -> list[dict]:
    """Entries below a prefix (``name`` as a URL, ``type``, ``size``, ``mtime_ns``); [] when there are none."""
    fs, path = filesystem(ref)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    proto = scheme(ref)
    out = []
    for e in entries:
        modified = e.get("LastModified") or e.get("mtime") or e.get("updated")
        out.append({"name": f"{proto}://{e['name']}", "type": e.get("type"), "size": e.get("size") or 0,
                    "mtime_ns": int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0})
    return out


def newest(ref: str) -> int:
    """The newest modification time (ns) of the files below a prefix; 0 when it holds none."""
    fs, path = filesystem(ref)
    times = [int(m.timestamp() * 1e9) for d in fs.find(path, detail=True).values()
             if hasattr(m := d.get("LastModified") or d.get("mtime") or d.get("updated"), "timestamp")]
    return max(times, default=0)


def remove_tree(ref: str) -> None:
    fs, path = filesystem(ref)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def check_out(out: str, option: str = "--out") -> None:
    """For a URL: its bucket (the first part of the path) exists and can be reached; one line if not."""
    if not is_url(out):
        return
    with store_errors(out, option, "write"):
        fs, path = filesystem(out, option)
        bucket = path.split("/", 1)[0]
        try:
            fs.info(bucket)  # the store's own error (no credentials, no answer) rather than exists()'s False
        except FileNotFoundError:
            raise InputError(f"{out}{_for(option)}: bucket {bucket} does not exist; create it or check the URL") \
                from None
