"""inspect's own bash and text editor tools in an sbx sandbox, driven by a scripted model:

    inspect eval examples/inspect/tools.py --sandbox sbx

The model is ``mockllm/model`` with a script of tool calls (so no key is
needed): it creates a program with the editor, views it, runs it with bash,
then answers.  The editor is inspect's sandbox tool, which inspect installs
in the sandbox and runs as root: the default sbx sandbox has root at hand
and a writable root filesystem for it.
"""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import TaskState, generate, use_tools
from inspect_ai.tool import bash, text_editor

MODEL = "mockllm/model"

# Usage is given, so mockllm counts no tokens (its tokenizer would be downloaded).
USAGE = ModelUsage(input_tokens=100, output_tokens=20, total_tokens=120)

SCRIPT = [
    ModelOutput.for_tool_call(
        MODEL,
        "text_editor",
        {
            "command": "create",
            "path": "/workspace/fizz.py",
            "file_text": "print(' '.join('Fizz' if i % 3 == 0 else str(i) for i in range(1, 7)))\n",
        },
    ),
    ModelOutput.for_tool_call(
        MODEL, "text_editor", {"command": "view", "path": "/workspace/fizz.py"}
    ),
    ModelOutput.for_tool_call(MODEL, "bash", {"command": "python3 /workspace/fizz.py"}),
    ModelOutput.from_content(MODEL, "It prints: 1 2 Fizz 4 5 Fizz"),
]
for output in SCRIPT:
    output.usage = USAGE


@scorer(metrics=[accuracy()])
def bash_printed_target():
    """Correct when the bash tool's own output (from the sandbox) is the target."""

    async def score(state: TaskState, target: Target) -> Score:
        printed = [
            m.text.strip()
            for m in state.messages
            if isinstance(m, ChatMessageTool) and m.function == "bash"
        ]
        ok = bool(printed) and printed[-1] == target.text
        return Score(value=CORRECT if ok else INCORRECT, answer=printed[-1] if printed else "")

    return score


@task
def tools() -> Task:
    return Task(
        dataset=[Sample(input="Write fizz.py and run it.", target="1 2 Fizz 4 5 Fizz")],
        solver=[use_tools(bash(timeout=60), text_editor()), generate()],
        scorer=bash_printed_target(),
        sandbox="sbx",
        model=get_model(MODEL, custom_outputs=SCRIPT),
    )
