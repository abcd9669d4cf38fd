"""Streamed transfers into and out of a sandbox: files of any size, folders as tar streams.

A transfer is a guest call whose input follows as flow-controlled ``data``
frames and whose output streams back as ``out`` frames (see the guest's
``transfer`` extension), so memory on either side stays within a window
however large the data.  ``send`` feeds an async iterable of chunks in;
``receive`` hands the data out chunk by chunk.  Either way the transfer ends
with the guest's verdict: its result, or the ``GuestError`` it reported.

Must not: know about sessions, tools or HTTP, or hold more of the data than
one chunk.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from orchestrator import protocol
from orchestrator._exceptions import unwrap_single_exception
from orchestrator.channel import CallStream
from orchestrator.errors import GuestError, OperationTimeout, guest_error_from_wire
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.client import GuestClient

__all__ = ["TransferStream", "receive", "send"]

_VERDICT_KEEP = 64 << 10
"""The tail of the child's stderr kept for its verdict (its last line)."""


class TransferStream:
    """The data of a transfer as it streams out, then its verdict."""

    def __init__(
        self, call: CallStream, request: rq.GuestRequest, label: str, limit: int | None = None
    ) -> None:
        self._call = call
        self._request = request
        self._label = label
        self._errors = bytearray()
        self._limit = limit
        self._received = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._call.receive()
            if item is None:
                return
            stream, data = item
            if stream == protocol.STDOUT:
                self._received += len(data)
                if self._limit is not None and self._received > self._limit:
                    raise GuestError(
                        f"{self._request.op} in {self._label} sent more than the "
                        f"{self._limit} bytes it may; something in the sandbox interfered "
                        "with the transfer — close the session"
                    )
                yield data
            else:
                self._errors += data
                if len(self._errors) > _VERDICT_KEEP:
                    del self._errors[:-_VERDICT_KEEP]

    async def verdict(self) -> dict[str, Any]:
        """Wait for the transfer's end: its result, or the error the guest reported."""
        async for _ in self:
            pass
        value, _ = await self._call.result()
        op, path = self._request.op, getattr(self._request, "path", "")
        if value.get("timed_out"):
            raise OperationTimeout(
                f"{op} of {path} in {self._label} did not finish within its timeout; "
                "pass a longer timeout"
            )
        lines = bytes(self._errors).strip().splitlines()
        try:
            found = json.loads(lines[-1]) if lines else None
        except ValueError:
            found = None
        if isinstance(found, dict) and found.get("ok") is True:
            result = found.get("r")
            return result if isinstance(result, dict) else {}
        if isinstance(found, dict) and isinstance(found.get("code"), str):
            details = found.get("details")
            raise guest_error_from_wire(
                found["code"],
                str(found.get("msg") or "the transfer failed"),
                details if isinstance(details, dict) else None,
            )
        tail = bytes(self._errors[-300:]).decode("utf-8", "replace").strip()
        raise GuestError(
            f"{op} of {path} in {self._label} ended without a verdict (exit code "
            f"{value.get('exit_code')}, signal {value.get('signal')}): {tail or 'no message'}; "
            "the sandbox may be out of memory or its processes were killed — retry"
        )


async def _feed(call: CallStream, source: AsyncIterable[bytes]) -> None:
    """Send ``source`` as the call's input, then EOF; stop quietly if the call ended."""
    try:
        async for chunk in source:
            if chunk:
                await call.send(bytes(chunk))
        await call.send_eof()
    except trio.BrokenResourceError:
        pass  # the child ended early (a refusal): its verdict says why


async def send(
    client: GuestClient, request: rq.GuestRequest, source: AsyncIterable[bytes]
) -> dict[str, Any]:
    """Stream ``source`` into the transfer ``request``; its verdict.

    If ``source`` fails, the transfer is cancelled in the guest (the child is
    stopped and leaves no half-written file) and the failure propagates.
    """
    timeout = float(getattr(request, "timeout", client.limits.call_timeout))
    async with client.stream(request, timeout=client.allowance(timeout)) as call:
        stream = TransferStream(call, request, client.label)
        with unwrap_single_exception():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_feed, call, source)
                return await stream.verdict()
    raise AssertionError("unreachable")  # pragma: no cover


@asynccontextmanager
async def receive(client: GuestClient, request: rq.GuestRequest) -> AsyncIterator[TransferStream]:
    """The transfer ``request``'s data as it streams out; ``verdict()`` once it is read.

    More data than the request's ``limit`` is an error, not more memory.  Leaving
    the block before the end cancels the transfer in the guest.
    """
    timeout = float(getattr(request, "timeout", client.limits.call_timeout))
    limit = request.limit if isinstance(request, rq.TransferReadRequest) else None
    async with client.stream(request, timeout=client.allowance(timeout)) as call:
        yield TransferStream(call, request, client.label, limit)
