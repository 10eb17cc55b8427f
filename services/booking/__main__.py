"""Run one booking worker process: python -m services.booking (on uvloop when installed)."""

import asyncio
import importlib.util

from runtime.logs import setup_logging
from services.booking.app import build
from shared.settings import get_settings

if __name__ == "__main__":
    setup_logging()
    _, app = build(get_settings())
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(app.run())
    else:  # the standard loop works too, only slower
        asyncio.run(app.run())
