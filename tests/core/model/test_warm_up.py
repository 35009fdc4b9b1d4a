"""After `warm_up`, no reply waits for a graph to be traced or compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

# Run in a process of its own: XLA reads XLA_FLAGS once, and with --xla_dump_to it writes
# one module_NNNN.* group of files for every compilation (tf.function's tracing count
# does not see XLA compiling a traced function again for a new input shape).
SCRIPT = """
import json, sys
from pathlib import Path

from core.model.responder import Responder

model, dump = Path(sys.argv[1]), Path(sys.argv[2])
words = "what did you eat i love pizza with cheese and the weather is cold today".split()


def compiled():
    return len({path.name.split(".")[0] for path in dump.glob("module_*")})


def traced(responder):
    graphs = [responder.scorer(), responder.decoder(responder.options)]
    return sum(
        function.experimental_get_tracing_count()
        for graph in graphs
        for function in vars(graph).values()
        if hasattr(function, "experimental_get_tracing_count")
    )


def context(n):
    size = 2 + n * 7 % 45  # from two words to more than the model reads
    return [" ".join(words[i % len(words)] for i in range(size))] * (1 + n % 3)


responder = Responder.load(model, warm_up=False)
responder.warm_up(batch=8)  # as a worker with PARLEY_WORKER_BATCH=8 does
before = {"compiled": compiled(), "traced": traced(responder)}
replies = 0
for size in (1, 3, 5, 8):
    replies += len(responder.reply([context(size + i) for i in range(size)]))
after = {"compiled": compiled(), "traced": traced(responder)}
print(json.dumps({"before": before, "after": after, "replies": replies}))
"""


def test_no_reply_compiles_anything_after_warm_up(tiny_model: Path, tmp_path: Path) -> None:
    # The tiny model has no reply index: every reply is written by the decoder and
    # ranked by the scorer, so both meet batches of every size here.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={tmp_path}".strip()
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model), str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert counts["replies"] == 17
    assert counts["before"]["compiled"] > 0  # the dump sees compilations at all
    assert counts["after"] == counts["before"], counts
