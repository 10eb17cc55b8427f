"""Development tools: `make run` (runner.py) and its scripted conversation (demo.py)."""
