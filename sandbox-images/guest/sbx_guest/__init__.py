"""The in-sandbox guest: executes calls from the orchestrator inside the sandbox.

Standard library only, Python 3.9+: it runs on whatever Python the base image
has.  ``protocol.py`` in this package is a copy of ``orchestrator/protocol.py``
put there when the image is built; it is not kept in this directory.

The modules, by concern: ``server`` (the frame loop and dispatch) on
``loop``; ``calls`` (the base of every call that answers later) and
``errors``; commands in ``execcall``, started by ``spawn`` and stopped
through ``proctree``, their output through ``pipes``; ``shells``; files in
``files``; and the extensions loaded on first use: ``kernel`` (with
``kernel_process``; ``kernel_main`` runs inside the interpreter), ``textedit``
(with ``textview``, ``textdoc``, ``textstores``), ``net``, and ``desktop``
(with ``desktop_*``, ``xinput``, ``xscreen``).
"""
