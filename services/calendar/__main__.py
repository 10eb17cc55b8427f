"""Run one calendar worker process: python -m services.calendar"""

import asyncio

from runtime.logs import setup_logging
from services.calendar.app import build
from shared.settings import get_settings

if __name__ == "__main__":
    setup_logging()
    _, app = build(get_settings())
    asyncio.run(app.run())
