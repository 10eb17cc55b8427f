"""The fixtures both test trees use (tests/, bench/eval/tests/) come from one plugin."""

pytest_plugins = ["testkit.fixtures"]
