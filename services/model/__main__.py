"""`python -m services.model`: serve the local model on MODEL_HOST:MODEL_PORT."""

from __future__ import annotations

import logging

import uvicorn
from pydantic import ValidationError

from services.model.runtime import Runtime
from services.model.server import create_app
from services.model.settings import ModelSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ModelSettings()
    except ValidationError as exc:
        for item in exc.errors():
            name = "MODEL_" + "_".join(str(p) for p in item["loc"]).upper()
            logging.error("bad setting %s: %s", name, item["msg"])
        return 2
    app = create_app(Runtime(settings))
    # No access log: the handler logs one line per generation (tokens, cache, timing) instead.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
