"""The sender process: reads the spool, maps records to HEC events, sends them over one pooled
connection (its courier thread), and commits only what HEC accepted (`process.py` is its entry).
Forked by the main process; answers main's flush requests.
"""
