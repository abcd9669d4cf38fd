"""``${{ ... }}`` templates: a small expression language of our own, parsed, never ``eval``-ed.

An expression is a literal (``3``, ``-1.5``, ``'text'``, ``"text"``,
``true``, ``false``, ``null``), a path (``steps.run.json.a.b``,
``steps.fan.results[0].stdout``, ``vars['my key']``), a comparison of two of
those (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), ``not``, ``and``, ``or``
and parentheses -- nothing more: no calls, no arithmetic, no attribute of a
Python object.  A tokenizer and a recursive-descent parser turn the text
into a tree of the node classes below, which ``evaluate`` walks over plain
data (dicts, lists, strings, numbers).

A path that leads nowhere (a missing key, an index past the end) is
``null``.  A template that is exactly one ``${{ }}`` keeps its value's type
(a list for ``foreach``, a bool for ``if``); text around it makes a string,
each value rendered as text (``null`` as nothing, booleans as ``true`` /
``false``, lists and mappings as JSON) and, in shell strings, shell-quoted.

Must not: evaluate anything but these nodes, or reach Python attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "Compare",
    "Expr",
    "Literal",
    "Logic",
    "Not",
    "Ref",
    "Template",
    "TemplateError",
    "evaluate",
    "parse_expression",
    "parse_template",
    "to_text",
    "truthy",
]

OPEN = "${{"
MAX_DEPTH = 64


class TemplateError(ValueError):
    """An expression that does not parse, or cannot be evaluated; says where and why."""


class Lazy:
    """A value computed when a path reaches it (``json`` of a step's output)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute = compute

    def get(self) -> Any:
        return self._compute()


# -- the tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Ref:
    """A path: a root name (``steps``, ``vars``, ``item``...) and keys or indexes after it."""

    root: str
    parts: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        text = self.root
        for part in self.parts:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr


Expr = Literal | Ref | Not | Logic | Compare


def refs_of(expr: Expr) -> Iterator[Ref]:
    """Every path an expression reads."""
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, Not):
        yield from refs_of(expr.operand)
    elif isinstance(expr, Logic | Compare):
        yield from refs_of(expr.left)
        yield from refs_of(expr.right)


# -- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<end>\}\})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[.\[\]()])
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str, start: int, *, until_end: bool) -> tuple[list[_Token], int]:
    """Tokens from ``start``; with ``until_end``, up to and including ``}}``."""
    found: list[_Token] = []
    at = start
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise TemplateError(f"unexpected {text[at]!r} at column {at + 1}")
        kind = match.lastgroup or ""
        at = match.end()
        if kind == "space":
            continue
        if kind == "end":
            if not until_end:
                raise TemplateError(f"unexpected '}}}}' at column {match.start() + 1}")
            found.append(_Token("end", "}}", match.start()))
            return found, at
        found.append(_Token(kind, match.group(), match.start()))
    if until_end:
        raise TemplateError(f"'{OPEN}' at column {start - 2} is never closed with '}}}}'")
    found.append(_Token("end", "", len(text)))
    return found, at


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


# -- the parser -----------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> bool:
        token = self.current
        if token.kind == kind and (text is None or token.text == text):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.accept(kind, text):
            self.fail(f"expected {what}")

    def fail(self, message: str) -> NoReturn:
        token = self.current
        shown = repr(token.text) if token.text else "the end"
        raise TemplateError(f"{message}, found {shown} at column {token.at + 1}")

    def whole(self) -> Expr:
        expr = self.disjunction()
        if self.current.kind != "end":
            self.fail("expected 'and', 'or', a comparison or the end of the expression")
        return expr

    def disjunction(self) -> Expr:
        left = self.conjunction()
        while self.accept("name", "or"):
            left = Logic("or", left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.accept("name", "and"):
            left = Logic("and", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.accept("name", "not"):
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        if self.current.kind == "op":
            op = self.take().text
            return Compare(op, left, self.primary())
        return left

    def primary(self) -> Expr:
        token = self.current
        if token.kind == "punct" and token.text == "(":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.fail(f"parentheses nested deeper than {MAX_DEPTH}")
            inner = self.disjunction()
            self.depth -= 1
            self.expect("punct", ")", "')'")
            return inner
        if token.kind == "number":
            self.take()
            number = float(token.text)
            is_int = re.fullmatch(r"-?\d+", token.text) is not None
            return Literal(int(token.text) if is_int else number)
        if token.kind == "string":
            self.take()
            return Literal(_unquote(token.text))
        if token.kind == "name":
            if token.text in ("true", "false", "null"):
                self.take()
                return Literal({"true": True, "false": False, "null": None}[token.text])
            if token.text in ("and", "or", "not"):
                self.fail("expected a value")
            self.take()
            return self.path(token.text)
        self.fail("expected a value (a literal, a path or '(')")
        raise AssertionError("unreachable")  # pragma: no cover

    def path(self, root: str) -> Ref:
        parts: list[str | int] = []
        while True:
            if self.accept("punct", "."):
                token = self.current
                if token.kind == "name":
                    parts.append(self.take().text)
                elif token.kind == "number" and re.fullmatch(r"\d+", token.text):
                    parts.append(int(self.take().text))  # `results.0` reads as results[0]
                else:
                    self.fail("expected a name after '.'")
            elif self.accept("punct", "["):
                token = self.current
                if token.kind == "number" and re.fullmatch(r"-?\d+", token.text):
                    parts.append(int(self.take().text))
                elif token.kind == "string":
                    parts.append(_unquote(self.take().text))
                else:
                    self.fail("expected an index (a whole number) or a quoted key in '[...]'")
                self.expect("punct", "]", "']'")
            else:
                return Ref(root, tuple(parts))


def parse_expression(text: str) -> Expr:
    """A bare expression (``steps.run.exit_code == 0``), without ``${{ }}``."""
    tokens, _ = _tokens(text, 0, until_end=False)
    return _Parser(tokens).whole()


@dataclass(frozen=True)
class Template:
    """A string with ``${{ expr }}`` parts; ``segments`` alternate text and expressions."""

    source: str
    segments: tuple[str | Expr, ...]

    @property
    def single(self) -> Expr | None:
        """The expression, if the template is exactly one ``${{ }}`` and nothing else."""
        if len(self.segments) == 1 and not isinstance(self.segments[0], str):
            return self.segments[0]
        return None

    @property
    def is_plain(self) -> bool:
        return all(isinstance(segment, str) for segment in self.segments)

    def refs(self) -> Iterator[Ref]:
        for segment in self.segments:
            if not isinstance(segment, str):
                yield from refs_of(segment)

    def render(self, context: Mapping[str, Any], quote: Callable[[str], str] | None = None) -> Any:
        """The value: typed for a single expression, else text (values quoted by ``quote``)."""
        single = self.single
        if single is not None and quote is None:
            return evaluate(single, context)
        parts: list[str] = []
        for segment in self.segments:
            if isinstance(segment, str):
                parts.append(segment)
            else:
                text = to_text(evaluate(segment, context))
                parts.append(quote(text) if quote is not None else text)
        return "".join(parts)


def parse_template(text: str) -> Template:
    segments: list[str | Expr] = []
    at = 0
    while True:
        start = text.find(OPEN, at)
        if start < 0:
            if at < len(text) or not segments:
                segments.append(text[at:])
            break
        if start > at:
            segments.append(text[at:start])
        tokens, at = _tokens(text, start + len(OPEN), until_end=True)
        if len(tokens) == 1:
            raise TemplateError(f"empty '{OPEN} }}}}' at column {start + 1}")
        segments.append(_Parser(tokens).whole())
    return Template(text, tuple(segments))


# -- evaluation -----------------------------------------------------------------------


def truthy(value: Any) -> bool:
    return bool(value)


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _resolve(ref: Ref, context: Mapping[str, Any]) -> Any:
    if ref.root not in context:
        raise TemplateError(f"unknown name {ref.root!r} in {ref}")
    value = context[ref.root]
    for part in ref.parts:
        if isinstance(value, Lazy):
            value = value.get()
        if isinstance(value, Mapping):
            value = value.get(part if isinstance(part, str) else str(part))
        elif isinstance(value, list) and isinstance(part, int):
            value = value[part] if -len(value) <= part < len(value) else None
        else:
            return None
    return value.get() if isinstance(value, Lazy) else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        same = (type(left) is bool) == (type(right) is bool) and left == right
        return same if op == "==" else not same
    if not ((_number(left) and _number(right)) or (type(left) is str and type(right) is str)):
        raise TemplateError(
            f"cannot order {to_text(left)!r} and {to_text(right)!r} with {op}: both must be "
            "numbers or both strings"
        )
    orders: dict[str, bool] = {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }
    return orders[op]


def evaluate(expr: Expr, context: Mapping[str, Any]) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Ref):
        return _resolve(expr, context)
    if isinstance(expr, Not):
        return not truthy(evaluate(expr.operand, context))
    if isinstance(expr, Logic):
        left = evaluate(expr.left, context)
        if expr.op == "and":
            return evaluate(expr.right, context) if truthy(left) else left
        return left if truthy(left) else evaluate(expr.right, context)
    return _compare(expr.op, evaluate(expr.left, context), evaluate(expr.right, context))
