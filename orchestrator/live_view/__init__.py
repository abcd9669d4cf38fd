"""The live view: people watch (or drive) a session's desktop in a browser, through noVNC.

``service.LiveView`` hands out per-session tokens and, on demand, runs a
standalone server; ``routes`` are its HTTP routes (FastAPI, imported only
when a view is served); ``grants`` says who may watch what.
"""
