"""Object store adapter (orchestration stage): s3:// URIs or local directories -> listings, files.

One small interface, two implementations: ``S3Objects`` (boto3, any S3-compatible endpoint) and
``LocalObjects`` (a directory behaves like a bucket prefix, its ETag is the content MD5 as S3's
is for single-part uploads). ``objects_for(uri, ...)`` picks one by the URI's scheme.
No Prefect here: a prefect-aws credentials block is resolved by the caller into a boto3 session.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from tagtree.errors import TagtreeError
from tagtree.io.atomic import atomic_path

# Files a dataset can be; anything else under a watched prefix (markers, outputs) is ignored.
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    etag: str
    size: int

    def to_dict(self) -> dict:
        return asdict(self)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise TagtreeError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return parsed.netloc, parsed.path.lstrip("/")


def join_uri(prefix: str, *parts: str) -> str:
    """Join a prefix (s3:// or a local path) with relative parts using '/'."""
    out = prefix.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def is_dataset(uri: str) -> bool:
    return uri.lower().endswith(DATA_SUFFIXES)


def strip_data_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def object_label(uri: str, prefix: str = "") -> str:
    """An object's name for outputs and datasets: its key path below ``prefix`` (the watched
    prefix) without the data suffix, so ``landing/a/data.jsonl``, ``landing/b/data.jsonl`` and
    ``landing/data.v2.jsonl`` are ``a/data``, ``b/data`` and ``data.v2``. An object outside
    ``prefix`` keeps its whole key (a local file: its file name)."""
    base = prefix.rstrip("/") + "/" if prefix else ""
    if base and uri.startswith(base):
        rel = uri[len(base):]
    elif is_s3(uri):
        rel = split_s3(uri)[1]
    else:
        rel = Path(uri).name
    rel = "/".join(p for p in rel.split("/") if p not in ("", ".", ".."))
    return strip_data_suffix(rel) or "dataset"


def object_version(etag: str) -> str:
    """A short, path-safe name of one object version (from its ETag): outputs of a changed
    object go next to, never over, those of the earlier version."""
    clean = "".join(c for c in etag.lower() if c.isalnum())
    if not clean:
        return "unversioned"
    return clean[:16] if len(clean) <= 32 else hashlib.sha256(clean.encode()).hexdigest()[:16]


class Objects(Protocol):
    def list(self, prefix: str) -> list[ObjectInfo]: ...
    def head(self, uri: str) -> ObjectInfo: ...
    def download(self, uri: str, dest: Path) -> Path: ...
    def upload(self, src: Path, uri: str) -> str: ...


class LocalObjects:
    """A local directory tree behaving like a bucket: prefixes are directories."""

    def list(self, prefix: str) -> list[ObjectInfo]:
        root = Path(prefix)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file())
        else:
            raise TagtreeError(f"no such directory or file: {prefix}")
        return [ObjectInfo(str(p), _md5(p), p.stat().st_size) for p in files]

    def head(self, uri: str) -> ObjectInfo:
        path = Path(uri)
        if not path.is_file():
            raise TagtreeError(f"no such file: {uri}")
        return ObjectInfo(str(path), _md5(path), path.stat().st_size)

    def download(self, uri: str, dest: Path) -> Path:
        src = Path(uri)
        if not src.is_file():
            raise TagtreeError(f"no such file: {uri}")
        return src  # already local: DuckDB and the readers can use it in place

    def upload(self, src: Path, uri: str) -> str:
        target = Path(uri)
        with atomic_path(target) as tmp:  # readers never see half a file
            shutil.copyfile(src, tmp)
        return str(target)


DEFAULT_TIMEOUT_S = 60.0  # botocore's own connect and read timeouts (objects.timeout_s)


class S3Objects:
    """S3 or any S3-compatible store through boto3.

    Credentials: a given boto3 ``session`` (e.g. from a prefect-aws block) or boto3's default
    chain (environment variables, profiles, instance roles). They are never logged or stored.
    """

    def __init__(self, endpoint_url: str | None = None, region: str | None = None,
                 session=None, timeout_s: float = DEFAULT_TIMEOUT_S):
        import boto3
        from botocore.config import Config as BotoConfig

        session = session or boto3.session.Session()
        # boto3 retries throttling/5xx itself ("standard" mode); the Prefect task retries on top
        # only for errors that outlive these attempts.
        self.client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 4},
                              connect_timeout=timeout_s, read_timeout=timeout_s))

    def list(self, prefix: str) -> list[ObjectInfo]:
        bucket, key = split_s3(prefix)
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                out.append(ObjectInfo(f"s3://{bucket}/{obj['Key']}", obj["ETag"].strip('"'),
                                      int(obj["Size"])))
        return out

    def head(self, uri: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            meta = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise TagtreeError(f"no such object: {uri}") from None
            raise
        return ObjectInfo(uri, meta["ETag"].strip('"'), int(meta["ContentLength"]))

    def download(self, uri: str, dest: Path) -> Path:
        bucket, key = split_s3(uri)
        with atomic_path(dest) as tmp:
            self.client.download_file(bucket, key, str(tmp))
        return dest

    def upload(self, src: Path, uri: str) -> str:
        bucket, key = split_s3(uri)
        self.client.upload_file(str(src), bucket, key)
        return uri


def objects_for(uri: str, *, endpoint_url: str | None = None, region: str | None = None,
                session=None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Objects:
    if is_s3(uri):
        return S3Objects(endpoint_url=endpoint_url, region=region, session=session,
                         timeout_s=timeout_s)
    return LocalObjects()


def browse_url(uri: str, conn: dict | None = None) -> str:
    """A link a browser can follow to an output: the S3-compatible endpoint's path-style URL
    (where one is configured), the AWS console's object page for S3 itself, a file:// URL for a
    local path."""
    if not is_s3(uri):
        return Path(uri).resolve().as_uri()
    bucket, key = split_s3(uri)
    endpoint = (conn or {}).get("endpoint_url")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{key}"
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"


def cache_path(cache_dir: str | Path, uri: str, etag: str) -> Path:
    """Where a downloaded object lives locally: one file per (key, ETag), keeping its name
    (readers detect formats from suffixes) and never overwritten by a newer version."""
    bucket, key = split_s3(uri)
    name = key.rsplit("/", 1)[-1]
    digest = hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()[:16]
    return Path(cache_dir) / bucket / digest / name


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
