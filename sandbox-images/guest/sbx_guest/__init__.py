"""The in-sandbox guest: executes calls from the orchestrator inside the sandbox.

Standard library only, Python 3.9+: it runs on whatever Python the base image
has.  ``protocol.py`` in this package is a copy of ``orchestrator/protocol.py``
put there when the image is built; it is not kept in this directory.
"""
