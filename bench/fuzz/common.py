"""What the atheris targets share: run one parser under the coverage-guided fuzzer.

atheris is not a dependency of parley (it needs clang to build on some systems); install
it into the virtualenv to fuzz, `.venv/bin/pip install atheris`. Without it a target says
so and exits 0. Each target runs until stopped, or for as long as atheris is told:

    .venv/bin/python -m bench.fuzz.gate_text -max_total_time=300
    .venv/bin/python -m bench.fuzz.json_depth -max_total_time=300 -max_len=70000

A crash (any exception the target does not expect) stops the run and writes the input
that caused it to `crash-*` in the working directory, to replay with the same command and
that file as its last argument.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz(target: Callable[[bytes], None]) -> None:
    """Run `target` on atheris' inputs, instrumenting parley's own modules."""
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (.venv/bin/pip install atheris); nothing to do")
        return
    atheris.instrument_all()
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


def text(data: bytes) -> str:
    """Fuzzer bytes as a string that may hold any code point, lone surrogates included."""
    return (
        data.decode("utf-16-le", errors="surrogatepass")
        if len(data) % 2 == 0
        else (data.decode("utf-8", errors="surrogateescape"))
    )
