"""Summaries of py-spy's folded stacks (`py-spy record -f raw`): where a process's time went.

    .venv/bin/python bench/folded.py profile.folded [N]

Inclusive share (the function or anything it called) and self share (the function's own
lines) of the samples, top N each. The benchmarks' `--profile` options write these next to
their results; docs/performance.md says what they led to.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((.*?):\d+\)")


def _frame_name(frame: str) -> str:
    name = _LOCATION.sub(r" (\1)", frame)
    return re.sub(r"/[^ ]*/(site-packages|work/main)/", "", name)


def summarize(folded: Path, top: int = 40) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        names = [_frame_name(frame) for frame in stack.split(";")]
        for name in set(names):
            inclusive[name] += samples
        own[names[-1]] += samples
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive (the function and what it called):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self (the function's own lines):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40), end="")
