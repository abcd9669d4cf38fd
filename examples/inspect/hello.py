"""A small eval in sbx sandboxes, runnable without a model key:

    inspect eval examples/inspect/hello.py --model mockllm/model --sandbox sbx

Each sample's input is a Python program; the solver runs it in the sample's
sandbox and the scorer compares what it printed with the target.  One
sample brings a file of its own (``files``), which inspect writes into the
sandbox before the sample starts.
"""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.util import sandbox


@solver
def run_program() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        result = await sandbox().exec(["python3", "-c", state.input_text], timeout=60)
        state.metadata["printed"] = result.stdout.strip()
        return state

    return solve


@scorer(metrics=[accuracy()])
def printed_target():
    async def score(state: TaskState, target: Target) -> Score:
        printed = str(state.metadata.get("printed", ""))
        return Score(value=CORRECT if printed == target.text else INCORRECT, answer=printed)

    return score


@task
def hello() -> Task:
    return Task(
        dataset=[
            Sample(input="print('hello from sbx')", target="hello from sbx"),
            Sample(input="print(6 * 7)", target="42"),
            Sample(
                input="print(open('data/greeting.txt').read().strip().upper())",
                target="BONJOUR",
                files={"data/greeting.txt": "bonjour\n"},
            ),
        ],
        solver=run_program(),
        scorer=printed_target(),
        sandbox="sbx",
    )
