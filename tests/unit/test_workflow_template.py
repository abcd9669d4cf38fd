"""The template language: literals, paths, comparisons, and/or/not, parentheses -- nothing more."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from orchestrator.workflows.masking import Masker
from orchestrator.workflows.template import (
    Lazy,
    TemplateError,
    evaluate,
    parse_expression,
    parse_template,
)

CONTEXT: dict[str, Any] = {
    "vars": {"n": 3, "name": "world", "flag": True, "my key": "spaced", "list": [1, 2, 3]},
    "steps": {
        "run": {"stdout": "42", "exit_code": 0, "json": {"a": {"b": [10, 20]}}},
        "fail-1": {"exit_code": 2, "status": "failed"},
    },
    "item": {"x": 1},
}


def value(text: str) -> Any:
    return evaluate(parse_expression(text), CONTEXT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("-1.5", -1.5),
        ("'a b'", "a b"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("true", True),
        ("null", None),
        ("vars.n", 3),
        ("vars['my key']", "spaced"),
        ("vars.list[1]", 2),
        ("vars.list[-1]", 3),
        ("vars.list.0", 1),
        ("steps.run.json.a.b[1]", 20),
        ("steps.fail-1.exit_code", 2),
        ("item.x", 1),
        ("steps.run.exit_code == 0", True),
        ("steps.run.stdout == '42'", True),
        ("steps.run.stdout == 42", False),
        ("vars.n >= 3 and vars.n < 4", True),
        ("vars.n > 3 or vars.flag", True),
        ("not vars.flag", False),
        ("not (vars.n == 3 and steps.fail-1.status == 'failed')", False),
        ("vars.nothing", None),
        ("vars.list[9]", None),
        ("steps.run.stdout.deeper", None),
        ("1 == true", False),
        ("vars.n == 3.0", True),
        ("vars.n != 4", True),
        ("'abc' < 'abd'", True),
        ("vars.name and vars.n", 3),
        ("null or 'fallback'", "fallback"),
        ("vars.__class__", None),
        ("vars.n.__class__", None),
    ],
)
def test_expressions_evaluate_over_plain_data(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("vars.n +", r"unexpected '\+'"),
        ("__import__('os')", "expected 'and', 'or'"),
        ("(vars.n", r"expected '\)'"),
        ("vars[", "expected an index"),
        ("vars.n ==", "expected a value"),
        ("a == b == c", "expected 'and', 'or'"),
        ("and", "expected a value"),
        ("1; 2", "unexpected ';'"),
        ("vars.n(1)", "expected 'and', 'or'"),
        ("(" * 80 + "1" + ")" * 80, "nested deeper"),
    ],
)
def test_anything_else_does_not_parse(text: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        parse_expression(text)


def test_ordering_needs_two_numbers_or_two_strings() -> None:
    with pytest.raises(TemplateError, match="cannot order"):
        value("vars.name < 3")


def test_an_unknown_root_is_an_error_at_evaluation() -> None:
    with pytest.raises(TemplateError, match="unknown name 'env'"):
        value("env.HOME")


def test_a_lone_template_keeps_its_type_and_text_around_makes_a_string() -> None:
    assert parse_template("${{ vars.list }}").render(CONTEXT) == [1, 2, 3]
    assert parse_template("${{ vars.flag }}").render(CONTEXT) is True
    assert parse_template("n=${{ vars.n }} ${{ vars.flag }}").render(CONTEXT) == "n=3 true"
    assert parse_template("${{ vars.list }}!").render(CONTEXT) == "[1,2,3]!"
    assert parse_template("[${{ vars.nothing }}]").render(CONTEXT) == "[]"
    assert parse_template("no templates").render(CONTEXT) == "no templates"
    assert parse_template("a ${{ '}}' }} b").render(CONTEXT) == "a }} b"


def test_values_in_shell_strings_are_quoted() -> None:
    context = {"vars": {"evil": "x; rm -rf / #", "quote": "it's"}}
    rendered = parse_template("echo ${{ vars.evil }} ${{ vars.quote }}").render(
        context, shlex.quote
    )
    assert rendered == "echo 'x; rm -rf / #' 'it'\"'\"'s'"
    assert shlex.split(rendered) == ["echo", "x; rm -rf / #", "it's"]


@pytest.mark.parametrize("text", ["${{ vars.n", "${{ }}", "a ${{ vars.n } }}"])
def test_broken_templates_say_where(text: str) -> None:
    with pytest.raises(TemplateError, match="column"):
        parse_template(text)


def test_paths_reach_lazy_values_only_when_read() -> None:
    calls: list[int] = []

    def compute() -> Any:
        calls.append(1)
        return {"a": 1}

    context = {"steps": {"x": {"json": Lazy(compute), "stdout": "s"}}}
    assert parse_template("${{ steps.x.stdout }}").render(context) == "s"
    assert calls == []
    assert parse_template("${{ steps.x.json.a }}").render(context) == 1
    assert calls == [1]


def test_refs_lists_every_path_read() -> None:
    template = parse_template("${{ steps.a.stdout == vars.x or not item }} ${{ secrets.t }}")
    assert [str(ref) for ref in template.refs()] == [
        "steps.a.stdout",
        "vars.x",
        "item",
        "secrets.t",
    ]


def test_the_masker_hides_raw_quoted_and_json_forms() -> None:
    masker = Masker(["p@ss word", "tok'en"])
    assert masker.text("a p@ss word b") == "a *** b"
    assert masker.text(shlex.quote("tok'en")) == "***"
    assert masker.mask({"k": ["p@ss word", 3], "p@ss word": b"x p@ss word"}) == {
        "k": ["***", 3],
        "***": b"x ***",
    }
    assert Masker([]).mask("p@ss word") == "p@ss word"
