"""Redis connections. Workers and the chat service use their own bytes client beside FastStream's."""

from __future__ import annotations

from redis.asyncio import Redis


def as_text(value: bytes | str) -> str:
    """Replies of a bytes-mode client as text."""
    return value.decode() if isinstance(value, bytes) else value


def connect(url: str, *, max_connections: int = 200) -> Redis:
    """A bytes-mode client (FastStream breaks with decode_responses=True, so we never share it).

    The socket timeout stays above every blocking read we issue (at most a few seconds).
    """
    return Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=15,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
