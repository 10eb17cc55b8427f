"""Run the chat API: python -m services.chat"""

import os

import uvicorn

from runtime.logs import setup_logging
from services.chat.api import create_app

if __name__ == "__main__":
    setup_logging()
    uvicorn.run(
        create_app(), host=os.environ.get("CHAT_HOST", "127.0.0.1"), port=int(os.environ.get("CHAT_PORT", "8000"))
    )
