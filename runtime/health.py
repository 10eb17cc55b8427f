"""A worker container's healthcheck: `python -m runtime.health <stream> <group>` exits 0 when
Redis answers and the group exists on every partition of the stream (settings.stream_partitions;
a worker creates its groups at start, before it reads), on one node or on a cluster."""

from __future__ import annotations

import asyncio
import sys

from redis.exceptions import RedisError

from runtime.redis import as_text, connect
from shared import streams
from shared.settings import Settings


async def groups_exist(settings: Settings, stream: str, group: str) -> bool:
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    try:
        for name in streams.partitions(stream, settings.stream_partitions):
            if not any(as_text(g["name"]) == group for g in await redis.xinfo_groups(name)):
                return False
        return True
    except RedisError:
        return False
    finally:
        await redis.aclose()


def main(argv: list[str]) -> int:
    stream, group = argv
    return 0 if asyncio.run(asyncio.wait_for(groups_exist(Settings(), stream, group), 4)) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
