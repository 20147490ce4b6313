"""The machine wing: the device, precision and threads (machine/devices.py), the fast inference path for
generation (machine/fast_inference.py), what this machine is and picks (machine/report.py), and the one store of
what was measured here (machine/store.py).
"""
