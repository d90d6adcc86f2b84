"""The main process: the Extensions API lifecycle (register, subscribe, event/next, INVOKE and
SHUTDOWN), the flush decision per invocation, and the supervision of the two children.

Imports nothing: `python -m ext` registers before anything heavy is loaded (cold start).
"""
