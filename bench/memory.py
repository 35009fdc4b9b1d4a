"""Peak memory of a process that holds the default model and answers messages.

Runs a child process that loads the model, answers a batch of 32 everyday messages (ones
the persona leaves to the model, so every one is ranked) with each decoding method,
and reports its peak resident set size (ru_maxrss), beside a child that only imports
TensorFlow, as a baseline measured in the same run.

    .venv/bin/python -m bench.memory [--model models/default]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.common import DEFAULT_MODEL, machine, table

CHILD = """
import resource, sys
{body}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
IMPORT_ONLY = "import tensorflow"
ANSWER = """
from pathlib import Path
from bench.decode import MESSAGES
from core.model.responder import Responder
r = Responder.load(Path({model!r}))
batch = [[MESSAGES[i % len(MESSAGES)]] for i in range(32)]
for method in ("greedy", "beam", "sample"):  # the generated candidates' decoding
    r.reply(batch, method=method)
"""


def peak_mib(body: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(body=body)], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[-1]) / 1024  # ru_maxrss is KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args()
    base = peak_mib(IMPORT_ONLY)
    worker = peak_mib(ANSWER.format(model=str(args.model)))
    print(f"peak memory (RSS); {machine()}")
    print(
        table(
            [
                ("python + import tensorflow", f"{base:.0f}"),
                (f"worker: {args.model.name} loaded, batch 32 answered", f"{worker:.0f}"),
                ("model's own share", f"{worker - base:.0f}"),
            ],
            ("process", "peak RSS MiB"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
