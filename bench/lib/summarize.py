#!/usr/bin/env python3
"""Turn bench/run's raw results into the markdown table.

usage: summarize.py RAWDIR
RAWDIR holds hyperfine --export-json files named PROJECT__SCENARIO__BUILDER.json
(the command is named after the builder), order.tsv (project, scenario
in run order), status.tsv (project, scenario, builder, why-not-timed) and
notes.md (free text appended under the table).
"""
import json, os, statistics, sys

BUILDERS = ["strata", "buildkit", "buildah"]
raw = sys.argv[1]

def rows(name):
    p = os.path.join(raw, name)
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [l.rstrip("\n").split("\t") for l in f if l.strip()]

status = {(p, s, b): why for p, s, b, why in rows("status.tsv")}
order = []
for p, s in rows("order.tsv"):
    if (p, s) not in order:
        order.append((p, s))

def medians(p, s):
    out = {}
    for b in BUILDERS:
        f = os.path.join(raw, f"{p}__{s}__{b}.json")
        if os.path.exists(f):
            with open(f) as fh:
                for r in json.load(fh)["results"]:
                    out[r["command"]] = statistics.median(r["times"])
    return out

def cell(m, p, s, b):
    if b in m:
        return f"{m[b]:.2f} s"
    return status.get((p, s, b), "skipped")

def ratio(m, a, b):
    if a in m and b in m and m[b] > 0:
        return f"{m[a] / m[b]:.2f}x"
    return "-"

print("| scenario | strata median | buildkit median | buildah median | strata/buildkit | strata/buildah |")
print("|---|---:|---:|---:|---:|---:|")
for p, s in order:
    m = medians(p, s)
    print(f"| {p} / {s} | " + " | ".join(cell(m, p, s, b) for b in BUILDERS)
          + f" | {ratio(m, 'strata', 'buildkit')} | {ratio(m, 'strata', 'buildah')} |")

notes = os.path.join(raw, "notes.md")
if os.path.exists(notes):
    print()
    with open(notes) as f:
        sys.stdout.write(f.read())
