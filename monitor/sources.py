"""Where ``run-once`` reads a cloud's captured traffic from, and in which format.

``--source`` is the capture store of one endpoint:

==========  ====================================================  =====================================
format      source URI                                            ``--versions`` maps
==========  ====================================================  =====================================
sagemaker   ``s3://bucket/prefix/<endpoint>`` (data capture's      variant name -> version
            ``DestinationS3Uri`` + the endpoint) or a local copy
azureml     ``https://<account>.blob.core.windows.net/<container>  deployment name -> version
            /modelDataCollector/<endpoint>`` or a local copy
vertex      ``bq://project.dataset.table`` or a local JSON-lines   deployed model ID -> version
            export of the table (``bq extract``)
==========  ====================================================  =====================================

Only the hour partitions (``yyyy/MM/dd/HH``) that overlap the window are read, and only records
whose time is in the window are kept. The cloud clients (boto3, azure-storage-blob,
google-cloud-bigquery) are imported only for their scheme.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.normalise import azureml, sagemaker, vertex
from monitor.normalise.common import hour_of

FORMATS = ("sagemaker", "azureml", "vertex")


class SourceError(Exception):
    """The source cannot be read; the message says why."""


def infer_format(uri: str) -> str | None:
    scheme = urlsplit(uri).scheme
    if scheme == "s3":
        return "sagemaker"
    if scheme == "bq":
        return "vertex"
    if scheme in ("https", "azureml", "wasbs", "abfss") and ".blob.core.windows.net" in uri:
        return "azureml"
    return None


# --------------------------------------------------------------------------- object stores


class Store:
    """Files under a root: ``names()`` (relative paths, ``/``-separated) and ``lines(key)``."""

    def names(self) -> Iterable[str]:
        raise NotImplementedError

    def lines(self, key: str) -> Iterable[bytes]:
        raise NotImplementedError


class LocalStore(Store):
    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://"))
        if not self.root.exists():
            raise SourceError(f"{self.root} does not exist")

    def names(self) -> Iterable[str]:
        if self.root.is_file():
            return [self.root.name]
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*.jsonl") if p.is_file())

    def lines(self, key: str) -> Iterable[bytes]:
        path = self.root if self.root.is_file() else self.root / key
        with path.open("rb") as f:
            yield from f


class S3Store(Store):  # pragma: no cover - needs AWS; the key layout is tested on LocalStore
    def __init__(self, uri: str, client: Any = None) -> None:
        parts = urlsplit(uri)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/") + "/"
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def names(self) -> Iterable[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :]

    def lines(self, key: str) -> Iterable[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        yield from body.iter_lines()


class BlobStore(Store):  # pragma: no cover - needs Azure
    def __init__(self, uri: str) -> None:
        try:
            from azure.identity import DefaultAzureCredential
            from azure.storage.blob import ContainerClient
        except ImportError:
            raise SourceError("reading Azure Blob Storage needs azure-storage-blob and azure-identity") from None
        parts = urlsplit(uri)
        container, _, prefix = parts.path.strip("/").partition("/")
        self.prefix = prefix.strip("/") + "/"
        self.client = ContainerClient(f"https://{parts.netloc}", container, credential=DefaultAzureCredential())

    def names(self) -> Iterable[str]:
        for blob in self.client.list_blobs(name_starts_with=self.prefix):
            yield blob.name[len(self.prefix) :]

    def lines(self, key: str) -> Iterable[bytes]:
        yield from self.client.download_blob(self.prefix + key).readall().splitlines()


def store(uri: str) -> Store:
    scheme = urlsplit(uri).scheme
    if scheme == "s3":
        return S3Store(uri)
    if scheme in ("https", "azureml", "wasbs", "abfss"):
        return BlobStore(uri)
    if scheme in ("", "file"):
        return LocalStore(uri)
    raise SourceError(f"cannot read {scheme}:// here")


# --------------------------------------------------------------------------- the window


def in_window(key: str, start: float, end: float) -> bool:
    """Whether a ``.../yyyy/MM/dd/HH/...`` key's hour overlaps ``[start, end]`` (keys without an
    hour partition are read: the records' own times decide)."""
    hour = hour_of(key.split("/"))
    if hour is None:
        return True
    begin = hour.timestamp()
    return begin <= end and begin + 3600 > start


def _keep(records: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in records if start <= r["ts"] <= end]


# --------------------------------------------------------------------------- per format


Result = tuple[list[dict[str, Any]], collections.Counter[str]]


def read_sagemaker(st: Store, model: str, versions: Mapping[str, str], start: float, end: float) -> Result:
    """``<variant>/yyyy/mm/dd/hh/*.jsonl`` under the endpoint's capture prefix."""
    out: list[dict[str, Any]] = []
    rejects: collections.Counter[str] = collections.Counter()
    for key in st.names():
        parts = key.split("/")
        if len(parts) != 6 or not in_window(key, start, end):
            continue
        version = versions.get(parts[0])
        if version is None:
            rejects["unknown_variant"] += 1
            continue
        records, bad = sagemaker.normalise(st.lines(key), model=model, version=version)
        out += _keep(records, start, end)
        rejects.update(bad)
    return out, rejects


def read_azureml(st: Store, model: str, versions: Mapping[str, str], start: float, end: float) -> Result:
    """``<deployment>/<collection>/yyyy/MM/dd/HH/*.jsonl`` under the endpoint's folder."""
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for key in st.names():
        parts = key.split("/")
        if len(parts) != 7 or not in_window(key, start, end):
            continue
        deployment, collection = parts[0], parts[1]
        side = "in" if collection in azureml.REQUEST_COLLECTIONS else "out"
        if collection not in azureml.REQUEST_COLLECTIONS + azureml.RESPONSE_COLLECTIONS:
            continue
        kind = "payload" if collection in ("request", "response") else "custom"
        groups.setdefault((deployment, kind), {"in": [], "out": []})[side].append(key)
    out: list[dict[str, Any]] = []
    rejects: collections.Counter[str] = collections.Counter()
    for (deployment, _kind), keys in sorted(groups.items()):
        version = versions.get(deployment)
        if version is None:
            rejects["unknown_deployment"] += 1
            continue

        def lines(ks: list[str]) -> Iterator[bytes]:
            for k in ks:
                yield from st.lines(k)

        records, bad = azureml.normalise(lines(keys["in"]), lines(keys["out"]), model=model, version=version)
        out += _keep(records, start, end)
        rejects.update(bad)
    return out, rejects


def bigquery_rows(uri: str, start: float, end: float) -> Iterable[Mapping[str, Any]]:  # pragma: no cover - GCP
    from google.cloud import bigquery

    table = uri.removeprefix("bq://")
    client = bigquery.Client(project=table.split(".", 1)[0])
    query = (
        f"SELECT {', '.join(vertex.COLUMNS)} FROM `{table}` "
        "WHERE logging_time BETWEEN TIMESTAMP_SECONDS(@start) AND TIMESTAMP_SECONDS(@end)"
    )
    params = [
        bigquery.ScalarQueryParameter("start", "INT64", int(start)),
        bigquery.ScalarQueryParameter("end", "INT64", int(end) + 1),
    ]
    job = client.query(query, job_config=bigquery.QueryJobConfig(query_parameters=params))
    return (dict(row.items()) for row in job.result())


def read_vertex(uri: str, model: str, versions: Mapping[str, str], start: float, end: float) -> Result:
    if urlsplit(uri).scheme == "bq":
        rows: Iterable[Mapping[str, Any]] = bigquery_rows(uri, start, end)
    else:
        st = LocalStore(uri)
        rows = (json.loads(line) for key in st.names() for line in st.lines(key) if line.strip())
    records, rejects = vertex.normalise(rows, model=model, versions=versions)
    return _keep(records, start, end), rejects


def read(uri: str, fmt: str, model: str, versions: Mapping[str, str], start: float, end: float) -> Result:
    """The capture records (contract shape, as dicts) of ``[start, end]`` and the reject counts."""
    if fmt == "vertex":
        return read_vertex(uri, model, versions, start, end)
    st = store(uri)
    if fmt == "sagemaker":
        return read_sagemaker(st, model, versions, start, end)
    if fmt == "azureml":
        return read_azureml(st, model, versions, start, end)
    raise SourceError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
