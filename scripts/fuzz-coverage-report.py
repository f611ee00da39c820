#!/usr/bin/python3
"""Lines covered per module, from `llvm-cov export -format=text` (scripts/fuzz-coverage.sh).

Usage: fuzz-coverage-report.py ROOT EXPORT.json TARGET < claims
where each claim line is `label|path|pattern`: the path is a file or a directory (a prefix)
relative to ROOT, the pattern (optional) a substring of the mangled function names to count
(the functions of one type, e.g. `HalfOpen`, or `6SaPair4open` for SaPair::open).

Whole files and directories use llvm-cov's own line counts; for the functions of one type a line
counts once and is covered when the innermost code region on it ran (within a few percent of
llvm-cov's count).
"""

import json
import os
import sys


def line_coverage(functions, path, pattern):
    """{line: covered} of the matching functions' code in files under `path`."""
    lines = {}
    for f in functions:
        if pattern and pattern not in f["name"]:
            continue
        files = f["filenames"]
        # Innermost region per line: later (nested) regions override enclosing ones.
        per_file = {}
        for r in f["regions"]:
            line_start, _, line_end, _, count, file_id, _, kind = r[:8]
            if kind != 0 or file_id >= len(files) or not files[file_id].startswith(path):
                continue
            span = per_file.setdefault(files[file_id], {})
            for line in range(line_start, line_end + 1):
                span[line] = count > 0
        for name, span in per_file.items():
            for line, covered in span.items():
                key = (name, line)
                lines[key] = lines.get(key, False) or covered
    return lines


def main():
    root, export, target = sys.argv[1], sys.argv[2], sys.argv[3]
    data = json.load(open(export))["data"][0]
    functions = data["functions"]
    rows = []
    for claim in sys.stdin.read().strip().splitlines():
        if not claim.strip():
            continue
        label, path, pattern = (claim.split("|") + ["", ""])[:3]
        path = os.path.join(root, path)
        if pattern.strip():
            lines = line_coverage(functions, path, pattern.strip())
            total = len(lines)
            covered = sum(1 for c in lines.values() if c)
        else:
            # Whole files: llvm-cov's own line counts.
            summaries = [f["summary"]["lines"] for f in data["files"]
                         if f["filename"].startswith(path)]
            total = sum(s["count"] for s in summaries)
            covered = sum(s["covered"] for s in summaries)
        rows.append((label, covered, total))
    print(f"{target}:")
    for label, covered, total in rows:
        share = f"{100.0 * covered / total:5.1f}%" if total else "   - "
        print(f"  {label:34} {share}  ({covered}/{total} lines)")
    covered = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    if total:
        print(f"  {'all of the above':34} {100.0 * covered / total:5.1f}%  ({covered}/{total} lines)")


main()
