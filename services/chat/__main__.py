"""Run the chat API: python -m services.chat"""

import os

import uvicorn

from services.chat.api import create_app
from shared.logs import setup_logging

if __name__ == "__main__":
    setup_logging()
    uvicorn.run(
        create_app(), host=os.environ.get("CHAT_HOST", "127.0.0.1"), port=int(os.environ.get("CHAT_PORT", "8000"))
    )
