"""The guest answers with error codes of ``protocol.ERROR_CODES`` only.

Two proofs: the guest's source, read with ``ast``, names no other code where
an error is made or sent; and ``CallError`` refuses a code outside the table
at run time, so a code computed at run time cannot slip through either.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from orchestrator import protocol
from orchestrator.images.assets import guest_files

Sinks = dict[str, int]
"""Callee name -> position of its error-code argument."""


def _guest_sources() -> dict[str, ast.Module]:
    return {
        name: ast.parse(data, filename=name)
        for name, data in guest_files().items()
        if name.startswith("sbx_guest/") and name != "sbx_guest/protocol.py"
    }


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id == "protocol":
            return "protocol." + func.attr
        return func.attr
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _code_argument(call: ast.Call, index: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "code":
            return keyword.value
    return call.args[index] if len(call.args) > index else None


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


def _code_parameter(function: ast.FunctionDef) -> int | None:
    """Where a function takes ``code`` (not counting ``self``), if it does."""
    names = [arg.arg for arg in function.args.args]
    if "code" not in names:
        return None
    return names.index("code") - (1 if names and names[0] in ("self", "cls") else 0)


def _sinks(trees: dict[str, ast.Module]) -> Sinks:
    """``CallError``, ``protocol.error``, and every guest function that hands its
    ``code`` parameter on to one of them (found until nothing new turns up)."""
    sinks: Sinks = {"CallError": 0, "protocol.error": 1}
    changed = True
    while changed:
        changed = False
        for tree in trees.values():
            for function in _functions(tree):
                where = _code_parameter(function)
                if where is None or function.name in sinks:
                    continue
                for node in ast.walk(function):
                    if not isinstance(node, ast.Call) or _callee(node) not in sinks:
                        continue
                    argument = _code_argument(node, sinks[_callee(node)])  # type: ignore[index]
                    if isinstance(argument, ast.Name) and argument.id == "code":
                        sinks[function.name] = where
                        changed = True
                        break
    return sinks


def _protocol_code(node: ast.expr) -> str | None:
    """The value of ``protocol.E_NAME``, or None if ``node`` is not such a name."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "protocol"
        and node.attr.startswith("E_")
    ):
        value = getattr(protocol, node.attr, None)
        assert isinstance(value, str), f"protocol has no error code {node.attr}"
        return value
    return None


def _code_tables(tree: ast.Module) -> dict[str, list[ast.expr]]:
    """Module-level dicts (``_ERRNO_CODES = {...}``): name -> their values."""
    tables = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Dict)
        ):
            tables[node.targets[0].id] = list(node.value.values)
    return tables


def _problem(
    argument: ast.expr | None,
    function: ast.FunctionDef | None,
    sinks: Sinks,
    tables: dict[str, list[ast.expr]],
) -> str | None:
    """Why ``argument`` is not a code known to be in the table (None if it is)."""
    if argument is None:
        return "no error code given"
    value = _protocol_code(argument)
    if value is not None:
        return None if value in protocol.ERROR_CODES else f"{value!r} is not in ERROR_CODES"
    if isinstance(argument, ast.Attribute) and argument.attr == "code":
        return None  # another CallError's code, which its constructor checked
    if isinstance(argument, ast.Name) and argument.id == "code":
        if function is not None and function.name in sinks:
            return None  # handed on by a function whose own callers are checked here
        return f"`code` in {function.name if function else 'module'}(), which is not a sink"
    if (
        isinstance(argument, ast.Call)
        and isinstance(argument.func, ast.Attribute)
        and argument.func.attr == "get"
        and isinstance(argument.func.value, ast.Name)
        and argument.func.value.id in tables
        and len(argument.args) == 2
    ):
        for candidate in [*tables[argument.func.value.id], argument.args[1]]:
            problem = _problem(candidate, None, sinks, tables)
            if problem is not None:
                return f"{argument.func.value.id}: {problem}"
        return None
    return f"{ast.unparse(argument)} is not a protocol.E_* name"


def _enclosing_functions(tree: ast.Module) -> dict[ast.AST, ast.FunctionDef]:
    owner: dict[ast.AST, ast.FunctionDef] = {}
    for function in _functions(tree):
        for node in ast.walk(function):
            owner[node] = function  # inner functions come later in the walk and win
    return owner


def test_the_guest_sends_only_error_codes_of_the_protocol_table() -> None:
    trees = _guest_sources()
    sinks = _sinks(trees)
    assert "fail" in sinks, "the walk found no function that hands a code on"
    checked = 0
    problems = []
    for name, tree in trees.items():
        owner = _enclosing_functions(tree)
        tables = _code_tables(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                _protocol_code(node)  # every protocol.E_* named anywhere exists
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            if callee not in sinks:
                continue
            checked += 1
            problem = _problem(_code_argument(node, sinks[callee]), owner.get(node), sinks, tables)
            if problem:
                problems.append(f"{name}:{node.lineno}: {callee}(): {problem}")
    assert not problems, "\n".join(problems)
    assert checked > 100  # the walk did look at the guest's errors


@pytest.fixture
def errors(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("errors")


def test_a_call_error_with_a_code_outside_the_table_is_refused(errors: ModuleType) -> None:
    with pytest.raises(errors.UnknownErrorCode, match="not_a_code"):
        errors.CallError("not_a_code", "something failed")


def test_every_code_of_the_table_makes_a_call_error(errors: ModuleType) -> None:
    for code in protocol.ERROR_CODES:
        assert errors.CallError(code, "message", {"k": 1}).code == code


def test_os_errors_become_codes_of_the_table(errors: ModuleType) -> None:
    import errno

    for number in [*errno.errorcode, 0]:
        failure = errors.os_error(OSError(number, "failure"), "/workspace/x", "read")
        assert failure.code in protocol.ERROR_CODES
