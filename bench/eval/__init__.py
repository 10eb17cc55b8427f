"""Evaluation harness: booking conversations played through the real services, scored by end state.

`python -m bench.eval --help`; the scenario format and the metrics are described in docs/eval.md.
"""
