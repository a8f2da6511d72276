"""A deployment's Redis keys: its own (``<prefix>...``) and arq's for its jobs (``arq:<kind>:<prefix>:queue:...``)."""

from __future__ import annotations

from redis.asyncio import Redis


async def deployment_keys(redis: Redis, prefix: str) -> list[bytes]:
    """Every key a deployment with this ``REDIS_PREFIX`` owns, and nothing of another's."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    # arq names its keys after the job id, and every job id starts with the queue name.
    return keys + [key async for key in redis.scan_iter(match=f"arq:*:{prefix}:queue:*", count=1000)]


async def delete_deployment_keys(redis: Redis, prefix: str) -> None:
    """Forget this deployment's keys (as if Redis restarted empty, for it alone)."""
    if keys := await deployment_keys(redis, prefix):
        await redis.delete(*keys)
