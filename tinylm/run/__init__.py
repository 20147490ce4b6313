"""The run wing: what a run directory is and how it is written. Its layout (run/layout.py), the session every
engine reports to while it trains (run/session.py), the loggers it feeds (run/loggers.py), and the format
versions of its files with their upgrades (run/migrations.py). It imports nothing of the pipeline, so every stage
may use it; a run loaded to generate and evaluate is tinylm/loading.py, above generation and evaluation.
"""
