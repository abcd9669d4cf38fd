"""``sbx completion bash|zsh|fish``: shell completion written from the parser itself.

The script is generated from the same ``argparse`` tree the commands run on,
so a new command or option completes as soon as it exists: commands and
actions by name, options by flag, an option's valid choices (``--log-level``,
``--language``) by value, and file names elsewhere.  After ``--`` the words
are the sandboxed command's, completed as files.  zsh uses the bash script
through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from orchestrator.config import Config

__all__ = ["CommandNode", "command_tree", "completion_script", "register"]

SHELLS = ("bash", "zsh", "fish")


@dataclass
class CommandNode:
    """One parser of the tree: its options and its sub-commands."""

    path: tuple[str, ...]
    flags_with_values: list[str] = field(default_factory=list)
    switches: list[str] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    children: dict[str, tuple[str, CommandNode]] = field(default_factory=dict)

    def walk(self) -> list[CommandNode]:
        nodes = [self]
        for _, child in self.children.values():
            nodes.extend(child.walk())
        return nodes


def command_tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("sbx",)) -> CommandNode:
    node = CommandNode(path)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                node.children[name] = (helps.get(name, ""), command_tree(child, (*path, name)))
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        target = node.switches if action.nargs == 0 else node.flags_with_values
        target.extend(action.option_strings)
        for flag in action.option_strings:
            node.helps[flag] = action.help or ""
            if action.choices is not None:
                node.choices[flag] = [str(choice) for choice in action.choices]
    return node


def _words(items: list[str]) -> str:
    return shlex.quote(" ".join(items))


def _bash(tree: CommandNode) -> str:
    subcommands, options, valued, choices = [], [], [], []
    for node in tree.walk():
        key = shlex.quote(" ".join(node.path))
        if node.children:
            subcommands.append(f"        {key}) echo {_words(list(node.children))} ;;")
        options.append(f"        {key}) echo {_words(node.switches + node.flags_with_values)} ;;")
        if node.flags_with_values:
            valued.append(f"        {key}) echo {_words(node.flags_with_values)} ;;")
        for flag, values in node.choices.items():
            choices.append(
                f"        {shlex.quote(' '.join(node.path) + '|' + flag)}) echo {_words(values)} ;;"
            )

    def table(name: str, rows: list[str]) -> str:
        return f'{name}() {{\n    case "$1" in\n' + "\n".join(rows) + "\n    esac\n}\n"

    return (
        '# sbx completion for bash: eval "$(sbx completion bash)"\n'
        + table("_sbx_subcommands", subcommands)
        + table("_sbx_options", options)
        + table("_sbx_valued", valued)
        + table("_sbx_choices", choices)
        + r"""_sbx() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local path="sbx" i word skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ $skip == 1 ]]; then skip=0; continue; fi
        if [[ $word == "--" ]]; then compopt -o default 2>/dev/null; COMPREPLY=(); return; fi
        if [[ $word == -* ]]; then
            [[ $word != *=* && " $(_sbx_valued "$path") " == *" $word "* ]] && skip=1
            continue
        fi
        [[ " $(_sbx_subcommands "$path") " == *" $word "* ]] && path="$path $word"
    done
    if [[ $skip == 1 ]]; then
        local values
        values="$(_sbx_choices "$path|$prev")"
        if [[ -n $values ]]; then
            COMPREPLY=($(compgen -W "$values" -- "$cur"))
        else
            compopt -o default 2>/dev/null; COMPREPLY=()
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_sbx_options "$path")" -- "$cur"))
        return
    fi
    local subs
    subs="$(_sbx_subcommands "$path")"
    if [[ -n $subs ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    else
        compopt -o default 2>/dev/null; COMPREPLY=()
    fi
}
complete -F _sbx sbx
"""
    )


def _zsh(tree: CommandNode) -> str:
    return (
        '# sbx completion for zsh: eval "$(sbx completion zsh)"\n'
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(tree).split("\n", 1)[1]
    )


def _fish_text(text: str) -> str:
    return shlex.quote(text.replace("\n", " ")[:120])


def _fish(tree: CommandNode) -> str:
    lines = ["# sbx completion for fish: sbx completion fish | source", "complete -c sbx -f"]
    for node in tree.walk():
        depth = len(node.path) - 1
        if depth == 0:
            condition = "__fish_use_subcommand"
        else:
            seen = [f"__fish_seen_subcommand_from {name}" for name in node.path[1:]]
            if node.children:
                seen.append(f"not __fish_seen_subcommand_from {' '.join(node.children)}")
            condition = "; and ".join(seen)
        for name, (text, _) in node.children.items():
            lines.append(
                f"complete -c sbx -n {shlex.quote(condition)} -a {name} -d {_fish_text(text)}"
            )
        for flag in node.switches + node.flags_with_values:
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            extra = ""
            if flag in node.choices:
                extra = f" -x -a {_words(node.choices[flag])}"
            elif flag in node.flags_with_values:
                extra = " -r -F"
            lines.append(
                f"complete -c sbx -n {shlex.quote(condition)} {option}{extra} "
                f"-d {_fish_text(node.helps.get(flag, ''))}"
            )
    return "\n".join(lines) + "\n"


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script of ``shell`` (bash, zsh or fish) for ``parser``'s commands."""
    tree = command_tree(parser)
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](tree)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script of SHELL. Load it now with "
        '`eval "$(sbx completion bash)"` (zsh: the same with zsh; fish: '
        "`sbx completion fish | source`), or for good by adding that line to ~/.bashrc, "
        "~/.zshrc or ~/.config/fish/config.fish.",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.cli import build_parser

    print(completion_script(args.shell, build_parser()), end="")
    return 0
