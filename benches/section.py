"""The marked sections of BENCHMARKS.md that the single-purpose benchmark scripts write
(transactions.sh, transactions-java.sh, tls.sh, replication.sh, compaction.sh; run-matrix.sh keeps
them when it rewrites the file)."""

import os
import re


def write_section(path, name, block):
    """Puts `block` (from `<!-- NAME:begin -->` to `<!-- NAME:end -->` and a newline) in place of
    that section of the file at `path`, or appends it after a blank line."""
    text = open(path).read() if os.path.exists(path) else ""
    if f"<!-- {name}:begin -->" in text:
        pattern = rf"<!-- {name}:begin -->.*?<!-- {name}:end -->\n?"
        text = re.sub(pattern, lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    open(path, "w").write(text)
