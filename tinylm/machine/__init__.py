"""The machine wing: the device, precision and threads, settled once per run (machine/devices.py), the fast
inference path for generation (machine/fast_inference.py), what this machine is and picks (machine/report.py),
and the cache folder with the one store of what was measured here (machine/store.py).
"""
