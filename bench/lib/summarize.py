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

# The CI scenarios (lib/ci.py) also record the bytes each run moved through the registry proxy.
def size(n):
    if n is None:
        return "?"
    for unit, f in (("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= f:
            return f"{n / f:.1f} {unit}"
    return f"{n:.0f} B"

def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "?"
    m, lo, hi = statistics.median(vals), min(vals), max(vals)
    return size(m) if size(lo) == size(hi) else f"{size(m)} ({size(lo)}–{size(hi)})"

ci_rows = []
for p, s in order:
    for b in BUILDERS:
        f = os.path.join(raw, f"{p}__{s}__{b}.ci.json")
        if os.path.exists(f):
            with open(f) as fh:
                ci_rows.append((p, s, b, json.load(fh)["runs"]))
if ci_rows:
    print()
    print("Registry traffic per runner-B build, through the counting proxy (median over runs, range if they differ). "
          "Layer = a blob some manifest in the registry lists with a layer media type; other = image configs, "
          "cache metadata. strata's own count (`--metadata-file`: strata.bytes.pulled / pushed) and its cached/total steps "
          "(`strata.steps`) are in the last columns; BuildKit's plain progress does not mark every reused step CACHED, so it has none.")
    print()
    print("| scenario | builder | median | ratio to BuildKit | layer bytes down | layer bytes up | other bytes down | other bytes up | blob HEADs | strata steps cached | strata metadata pulled / pushed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, s, b, runs in ci_rows:
        m = medians(p, s)
        t = statistics.median(r["time"] for r in runs)
        smd, steps = "", []
        if b == "strata":
            mds = [r.get("strata_md", {}) for r in runs]
            smd = med([x.get("pulled") for x in mds]) + " / " + med([x.get("pushed") for x in mds])
            steps = sorted({f"{(x.get('steps') or {}).get('cached', '?')}/{(x.get('steps') or {}).get('total', '?')}" for x in mds})
        print(f"| {p} / {s} | {b} | {t:.2f} s | {ratio(m, b, 'buildkit') if b != 'buildkit' else ''} | "
              f"{med([r['down']['layer'] for r in runs])} | {med([r['up']['layer'] for r in runs])} | "
              f"{med([r['down']['other'] for r in runs])} | {med([r['up']['other'] for r in runs])} | "
              f"{statistics.median(r['heads'] for r in runs):.0f} | {', '.join(steps)} | {smd} |")
    bk = [r["bk_start"] for _, _, b, runs in ci_rows if b == "buildkit" for r in runs]
    if bk:
        print()
        print(f"buildkitd start-up on an empty --root (untimed, before each BuildKit runner-B build): median {statistics.median(bk):.2f} s.")

notes = os.path.join(raw, "notes.md")
if os.path.exists(notes):
    print()
    with open(notes) as f:
        sys.stdout.write(f.read())
