"""The typed guest client: every call into a sandbox, as request and response models.

``GuestClient`` (``client.py``) runs the calls over a ``GuestChannel``;
``requests.py`` and ``responses.py`` hold one model per guest operation;
``exec_stream.py`` streams a running command's output.  The error codes the
guest may answer with are ``orchestrator.protocol.ERROR_CODES``, mapped to
exceptions in ``orchestrator.errors``.
"""

from orchestrator.guest_client.client import CallLimits, GuestClient
from orchestrator.guest_client.exec_stream import ExecStream, OutputCallback, forward_output

__all__ = ["CallLimits", "ExecStream", "GuestClient", "OutputCallback", "forward_output"]
