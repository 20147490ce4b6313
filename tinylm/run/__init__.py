"""The run wing: a run directory's layout (run/layout.py), the session that writes it while an engine trains
(run/session.py), loading it (run/loading.py), and the upgrades of its files from earlier formats
(run/migrations.py).
"""
