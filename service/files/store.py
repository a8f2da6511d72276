"""Where attachment bytes live: a local folder (the default) or any S3-compatible bucket."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from service.settings import Settings


class FileStore(Protocol):
    """Bytes by key; keys are Switchboard's own (``<attachment id>``), never a client's file name."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    def presigned_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        """A URL the store itself serves the object at for ``expires_in`` seconds; None: Switchboard serves it."""
        ...

    async def aclose(self) -> None: ...


class LocalFileStore:
    """Files under ``root``; written to a temporary name and renamed, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def _write(self, key: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, self.path(key))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes | None:
        path = self.path(key)
        return await asyncio.to_thread(path.read_bytes) if path.is_file() else None

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def presigned_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        return None

    async def aclose(self) -> None:
        pass


class S3FileStore:
    """Objects under ``prefix`` in a bucket, through boto3 (its blocking calls run in a thread)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes | None:
        try:
            answer = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return await asyncio.to_thread(answer["Body"].read)  # type: ignore[no-any-return]

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        # Signed locally (no request): the store answers it, and refuses it once expired.
        return self.client.generate_presigned_url(  # type: ignore[no-any-return]
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition(filename),
            },
            ExpiresIn=expires_in,
        )

    async def aclose(self) -> None:
        self.client.close()


def content_disposition(filename: str) -> str:
    """``inline`` with the file's name, RFC 6266 (the ASCII fallback and the UTF-8 name)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def open_store(settings: Settings) -> FileStore:
    """The store ``FILE_STORE`` names."""
    if settings.file_store == "local":
        return LocalFileStore(Path(settings.data_dir) / "files")
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3}),
    )
    assert settings.s3_bucket is not None  # the settings refuse s3 without a bucket
    return S3FileStore(client, settings.s3_bucket, settings.s3_prefix)
