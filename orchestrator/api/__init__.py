"""The HTTP API (``sbx serve``): sessions, exec with streaming, tools, files, agent runs.

``server.serve_api`` runs it on ``http_server.HttpServer``; ``app.create_app``
assembles the ASGI app from ``routes/`` (one router per tag) and
``dependencies`` (auth, ownership, body limit); ``client.SbxClient`` talks to
it.  Nothing is imported here, so the command line does not pay for FastAPI
unless it serves.
"""
