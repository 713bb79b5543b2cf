"""BENCHMARKS.md sections written by the benchmarks run through Tests/sdk/run (scripts/bench keeps
every `<!-- bench-… -->` section when it rewrites the rest)."""
import os

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "BENCHMARKS.md")


def write_section(marker, section):
    """Replaces the section between `<!-- marker -->` and `<!-- /marker -->` (`section` carries
    both), or appends it."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->\n"
    try:
        with open(PATH) as f:
            text = f.read()
    except OSError:
        text = "# Benchmarks\n"
    if start in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1] if end in rest else ""
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(PATH, "w") as f:
        f.write(text)
