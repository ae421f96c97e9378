"""RedisStorage keeps the artifact byte total as a running counter, not a rescan."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from py_code_mode.errors import ArtifactQuotaError
from py_code_mode.quotas import Quotas
from py_code_mode.storage.redis import RedisStorage

from .._redis import redis_url as redis_url


async def test_the_running_total_follows_saves_replacements_and_deletes(redis_url: str) -> None:
    prefix = f"quota-{uuid.uuid4().hex[:12]}"
    storage = RedisStorage(redis_url, prefix=prefix)
    await storage.open()
    async with aioredis.Redis.from_url(redis_url) as admin:

        async def total() -> int:
            return int(await admin.get(f"{prefix}:artifacts:bytes") or -1)

        await storage.save_artifact("a", b"x" * 100)
        await storage.save_artifact("b", b"y" * 50)
        assert await total() == 150
        await storage.save_artifact("a", b"z" * 30)
        assert await total() == 80
        assert await storage.delete_artifact("b")
        assert not await storage.delete_artifact("b")
        assert await total() == 30
        # Lost (or written by an older version): rebuilt from the payloads on the next save.
        await admin.delete(f"{prefix}:artifacts:bytes")
        await storage.save_artifact("c", b"c" * 10, quotas=Quotas(max_total_artifact_bytes=40))
        assert await total() == 40
        with pytest.raises(ArtifactQuotaError, match="max_total_artifact_bytes=40"):
            await storage.save_artifact("d", b"d", quotas=Quotas(max_total_artifact_bytes=40))
        assert await total() == 40
        assert await admin.exists(f"{prefix}:artifact:d") == 0
    await storage.close()
