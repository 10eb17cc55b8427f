"""Manage tenant API keys: python -m services.chat.apikeys create TENANT | revoke KEY

A new key is printed once; only its sha256 is stored."""

from __future__ import annotations

import argparse
import asyncio

from runtime.redis import connect
from services.chat.access import ApiKeys, checked_tenant_id
from shared.settings import get_settings


async def run(command: str, value: str) -> str:
    settings = get_settings()
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    try:
        keys = ApiKeys(redis)
        if command == "create":
            return await keys.create(value)
        return "revoked" if await keys.revoke(value) else "no such key"
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["create", "revoke"])
    parser.add_argument("value", help="tenant id (create) or the key (revoke)")
    args = parser.parse_args()
    if args.command == "create":
        try:
            checked_tenant_id(args.value)
        except ValueError as exc:
            parser.error(str(exc))  # exit status 2, before anything is stored
    print(asyncio.run(run(args.command, args.value)))


if __name__ == "__main__":
    main()
