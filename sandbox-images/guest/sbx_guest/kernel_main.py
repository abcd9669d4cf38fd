"""A persistent Python interpreter, like a notebook kernel: the process code execution runs in.

The guest's kernel extension starts it as
``python3 -c BOOTSTRAP kernel_main.py CTL_IN CTL_OUT`` -- deliberately without
``-I``/``-S``, so the code sees the sandbox's site-packages and environment
like any ``python3`` would, and with no directory of the guest on
``sys.path``.  Requests (a length-prefixed JSON object) arrive on CTL_IN;
answers (two lengths, a JSON header, then PNG figures) leave on CTL_OUT.  The
code's own output goes to file descriptors 1 and 2, which are pipes the guest
reads, so output of subprocesses and C extensions is captured too.

Variables, imports, the working directory and files persist between calls.
The value of a final expression is returned (as its ``repr``), figures left
open by matplotlib's pyplot are returned as PNG and closed, ``SIGINT``
interrupts only the user's code, and ``SystemExit`` ends a call, not the
interpreter.  Standard library only at start-up; it must never import
anything of the guest's.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import linecache
import os
import signal
import struct
import sys
import traceback
import types
import warnings

PAIR = struct.Struct("!II")
LENGTH = struct.Struct("!I")
CO_COROUTINE = 0x80
TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
THIS_FILE = os.path.abspath(__file__) if "__file__" in globals() else ""


class Kernel:
    def __init__(self, ctl_in: int, ctl_out: int) -> None:
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.running = False
        self.interrupted = False
        self.cells = 0
        self.loop = None
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        self.handler = self.on_sigint

    # -- plumbing -------------------------------------------------------------

    def on_sigint(self, signum: int, frame: object) -> None:
        """Interrupt the user's code, never the kernel's own bookkeeping."""
        if self.running:
            self.interrupted = True
            raise KeyboardInterrupt

    def read_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.ctl_in, min(size, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.ctl_out, view) :]

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self.handler)
        while True:
            try:
                (size,) = LENGTH.unpack(self.read_exact(LENGTH.size))
                request = json.loads(self.read_exact(size))
            except EOFError:
                return  # the guest is gone
            header, payload = self.run(request)
            body = json.dumps(header).encode()
            self.write_all(PAIR.pack(len(body), len(payload)) + body + payload)

    # -- one call --------------------------------------------------------------

    def run(self, request: dict) -> tuple:
        self.cells += 1
        code = str(request.get("code", ""))
        filename = "<cell %d>" % self.cells
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        outcome = {"status": "ok", "return_code": 0, "result": None}
        value = None
        try:
            value = self.execute(code, filename)
        except SystemExit as exc:
            outcome["status"] = "exit"
            outcome["return_code"] = self.exit_code(exc)
        except KeyboardInterrupt as exc:
            outcome.update(status="interrupted", return_code=130)
            outcome["error"] = {"name": "KeyboardInterrupt", "value": ""}
            self.print_exception(exc)
        except _Reported as exc:
            outcome.update(status="error", return_code=1)
            outcome["error"] = {
                "name": type(exc.original).__name__,
                "value": self.safe_str(exc.original),
            }
        except BaseException as exc:  # the user's exception: report it, keep serving
            outcome.update(status="error", return_code=1)
            outcome["error"] = {"name": type(exc).__name__, "value": self.safe_str(exc)}
            self.print_exception(exc)
        finally:
            self.running = False
            signal.signal(signal.SIGINT, self.handler)
        self.restore_streams()
        figures, dropped = self.figures(
            value,
            int(request.get("max_figures", 20)),
            int(request.get("max_figure_bytes", 32 << 20)),
        )
        if value is not None and not self.is_figure(value):
            self.namespace["_"] = value
            outcome["result"] = self.safe_repr(value, int(request.get("repr_limit", 20000)))
        self.flush()
        outcome["figures"] = [len(figure) for figure in figures]
        outcome["figures_dropped"] = dropped
        return outcome, b"".join(figures)

    def execute(self, code: str, filename: str) -> object:
        try:
            tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST | TOP_LEVEL_AWAIT)
        except (SyntaxError, ValueError) as exc:
            # No traceback through the kernel for code that never ran.
            self.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
            raise _Reported(exc) from None
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec", TOP_LEVEL_AWAIT)
        tail = compile(last, filename, "eval", TOP_LEVEL_AWAIT) if last is not None else None
        self.interrupted = False
        self.running = True
        try:
            self.evaluate(body)
            return self.evaluate(tail) if tail is not None else None
        finally:
            self.running = False

    def evaluate(self, code: types.CodeType) -> object:
        value = eval(code, self.namespace)
        if code.co_flags & CO_COROUTINE:
            if self.loop is None:
                import asyncio  # only for code that awaits at the top level

                self.loop = asyncio.new_event_loop()
            value = self.loop.run_until_complete(value)  # type: ignore[attr-defined]
        return value

    # -- results ----------------------------------------------------------------

    @staticmethod
    def exit_code(exc: SystemExit) -> int:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        sys.stderr.write("%s\n" % (code,))
        return 1

    def print_exception(self, exc: BaseException) -> None:
        """The traceback as Python prints it, without the kernel's own frames."""
        try:
            report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
            seen = set()
            pending = [report]
            while pending:
                part = pending.pop()
                if id(part) in seen:
                    continue
                seen.add(id(part))
                part.stack = traceback.StackSummary.from_list(
                    [frame for frame in part.stack if frame.filename != THIS_FILE]
                )
                pending.extend(p for p in (part.__cause__, part.__context__) if p is not None)
            text = "".join(report.format())
        except Exception:  # a hostile __str__: still say what happened
            text = "%s (its message could not be shown)\n" % type(exc).__name__
        try:
            self.stderr.write(text)
        except Exception:
            pass

    @staticmethod
    def safe_str(exc: BaseException) -> str:
        try:
            return str(exc)[:2000]
        except Exception:
            return "(unprintable)"

    @staticmethod
    def safe_repr(value: object, limit: int) -> str:
        try:
            text = repr(value)
        except Exception as exc:
            return "<repr of %s failed: %s>" % (type(value).__name__, type(exc).__name__)
        if len(text) > limit:
            text = text[:limit] + "... [%d more characters]" % (len(text) - limit)
        return text

    @staticmethod
    def is_figure(value: object) -> bool:
        return type(value).__module__.startswith("matplotlib.figure")

    def figures(self, value: object, limit: int, max_bytes: int) -> tuple:
        """PNG images of pyplot's open figures (closing them) and of a returned figure."""
        found = []
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None and not self.is_figure(value):
            return [], 0
        figures = []
        try:
            if pyplot is not None:
                figures = [pyplot.figure(number) for number in pyplot.get_fignums()]
            if self.is_figure(value) and value not in figures:
                figures.append(value)
            total = 0
            for figure in figures[:limit]:
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", bbox_inches="tight")  # type: ignore[attr-defined]
                image = buffer.getvalue()
                if total + len(image) > max_bytes:
                    self.stderr.write(
                        "sbx: a %d-byte figure was left out: the figures of one call are capped "
                        "at %d bytes (savefig it under the outputs directory instead)\n"
                        % (len(image), max_bytes)
                    )
                    continue
                total += len(image)
                found.append(image)
        except Exception as exc:
            self.stderr.write("sbx: a figure could not be rendered as PNG: %r\n" % (exc,))
        finally:
            if pyplot is not None:
                try:
                    pyplot.close("all")
                except Exception:
                    pass
        return found, max(0, len(figures) - len(found))

    def restore_streams(self) -> None:
        for name, original in (("stdout", self.stdout), ("stderr", self.stderr)):
            current = getattr(sys, name)
            if current is not original:
                try:
                    current.flush()
                except Exception:
                    pass
                setattr(sys, name, original)

    def flush(self) -> None:
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except Exception:
                pass


class _Reported(Exception):
    """A syntax error already printed: report it as an error without a traceback."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _die_with_parent() -> None:
    """Ask the kernel (Linux) to kill this process when the guest dies, whatever the reason."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _volunteer_for_oom() -> None:
    """Be the one the OOM killer picks, rather than the guest; raising it needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def main() -> None:
    ctl_in, ctl_out, parent = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    _die_with_parent()
    if os.getppid() != parent:
        return  # the guest died before we could ask to die with it
    _volunteer_for_oom()
    sys.argv = [""]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    warnings.filterwarnings(
        "ignore", message=r".*(non-GUI backend|non-interactive, and thus cannot be shown).*"
    )
    Kernel(ctl_in, ctl_out).serve()


if __name__ == "__sbx_kernel__":
    main()
