"""The listener process: takes each Telemetry API POST, decodes and filters it, appends it to the
spool, and only then answers 2xx (`process.py` is its entry). Forked by the main process.
"""
