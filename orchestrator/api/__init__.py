"""The HTTP API (``sbx serve``): sessions, exec with streaming, tools, files, agent runs.

``orchestrator.api.server.serve_api`` runs it; ``orchestrator.api.app.create_app``
builds the ASGI app; ``orchestrator.api.client.SbxClient`` talks to it.  Nothing
is imported here, so the command line does not pay for FastAPI unless it serves.
"""
