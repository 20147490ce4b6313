"""The run wing: a run directory's layout (run/layout.py), the session every engine reports to while it trains
(run/session.py) and the loggers it feeds (run/loggers.py), loading a run (run/loading.py), and the upgrades of
its files from earlier formats (run/migrations.py).
"""
