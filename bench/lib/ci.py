#!/usr/bin/env python3
"""The CI scenarios of bench/run: a registry cache carried between two runners.

usage: ci.py --raw RAWDIR --project P --scenarios ci-full-hit,ci-edit --builders strata,buildkit --runs N
env (exported by bench/run): BENCH_MNT REG PROXY STRATA BUILDKITD BUILDCTL ACT

Every registry access goes through PROXY (bench/regproxy in front of the registry at REG), which
counts blob bytes per digest. For each builder, once per project (untimed):

  runner A: empty store, build CONTEXT, export the cache (mode=max) and push the image.

Then, for each scenario and run (builders interleaved, order alternating between runs):

  prepare (untimed): ci-edit appends a line to src/main.js; runner B's store is emptied
      (strata: a fresh --root; BuildKit: buildkitd restarted on a fresh --root, its start-up
      time recorded but not timed); sync; proxy counters zeroed.
  timed:  runner B builds with cache import + export (mode=max) + push, to the same registry.
  after:  the proxy's counters are read; bytes are split into layer bytes (blobs some manifest
      in the registry lists with a layer media type) and other bytes (image configs, cache
      metadata).

Writes RAWDIR/P__S__B.json (hyperfine-shaped: results[0].times, for summarize.py),
RAWDIR/P__S__B.ci.json (per-run times and bytes) and appends to order.tsv / status.tsv / notes.md.
The builds' output is in BENCH_MNT/logs/ci/.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, time, urllib.request

MNT = os.environ["BENCH_MNT"]
REG = os.environ["REG"]
PROXY = os.environ["PROXY"]
ACT = os.environ["ACT"]
LOGS = os.path.join(MNT, "logs", "ci")
OUT = os.path.join(MNT, "out", "ci")
CI_PROJECTS = os.path.join(MNT, "ci-projects")
MANIFEST_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))


def log(msg):
    sys.stderr.write(f"\033[1m==> {msg}\033[0m\n")


def act(*args):
    subprocess.run([ACT, *args], check=True)


def proxy_stats(reset):
    with urllib.request.urlopen(f"http://{PROXY}/_stats" + ("?reset=1" if reset else "")) as r:
        return json.load(r)


# ------------------------------------------------------------------ registry media types
# digest -> media type, as declared by any manifest or index reachable from the tags we look at.
# A digest's media type never changes, so the map only grows.
known = {}


def walk(repo, ref, seen=None):
    """Record the media type of every descriptor reachable from repo:ref (read from REG directly,
    not through the proxy, so it is not counted)."""
    seen = set() if seen is None else seen
    if (repo, ref) in seen:
        return
    seen.add((repo, ref))
    req = urllib.request.Request(f"http://{REG}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(req) as r:
            m = json.load(r)
    except Exception:
        return
    descs = list(m.get("manifests", [])) + list(m.get("layers", []))
    if "config" in m:
        descs.append(m["config"])
    for d in descs:
        known.setdefault(d["digest"], d.get("mediaType", ""))
        if d.get("mediaType") in MANIFEST_TYPES:
            walk(repo, d["digest"], seen)


def is_layer(digest):
    mt = known.get(digest, "")
    return (".layer." in mt or "rootfs.diff" in mt) and "strata.cache" not in mt


def classify(stats):
    """Split the proxy's per-blob rows into layer and other bytes per direction."""
    out = {"down": {"layer": 0, "other": 0}, "up": {"layer": 0, "other": 0}, "blobs": []}
    for b in stats["blobs"]:
        kind = "layer" if is_layer(b["digest"]) else "other"
        out[b["dir"]][kind] += b["bytes"]
        out["blobs"].append({**b, "kind": kind, "mediaType": known.get(b["digest"], "?")})
    return out


# ------------------------------------------------------------------ builders
def names(b, p):
    repo = f"ci-{b}-{p}"
    cache = f"{PROXY}/{repo}:" + ("cache" if b == "strata" else "bkcache")
    return repo, cache


def command(b, p, state, tag, md, import_cache):
    ctx = os.path.join(CI_PROJECTS, p)
    repo, cache = names(b, p)
    img = f"{PROXY}/{repo}:{tag}"
    if b == "strata":
        cmd = [os.environ["STRATA"], "--root", os.path.join(MNT, "state", "strata", state), "build",
               "--progress=plain"]
        if import_cache:
            cmd += ["--cache-from", cache]
        return cmd + ["--cache-to", f"type=registry,ref={cache},mode=max", "--push", "-t", img,
                      "--metadata-file", md, ctx]
    sock = os.path.join(MNT, "run", f"bk-{state}.sock")
    cmd = [os.environ["BUILDCTL"], "--addr", f"unix://{sock}", "build", "--progress=plain",
           "--frontend", "dockerfile.v0", "--local", f"context={ctx}", "--local", f"dockerfile={ctx}",
           "--output", f"type=image,name={img},push=true,registry.insecure=true",
           "--export-cache", f"type=registry,ref={cache},mode=max,registry.insecure=true"]
    if import_cache:
        cmd += ["--import-cache", f"type=registry,ref={cache},registry.insecure=true"]
    return cmd + ["--metadata-file", md]


def reset(b, state):
    """Empty the store; for BuildKit start a daemon on it. Returns the daemon start-up time."""
    t = time.perf_counter()
    act("reset", b, state)
    return time.perf_counter() - t if b == "buildkit" else 0.0


def drop(b, state):
    act("stop", b, state)
    shutil.rmtree(os.path.join(MNT, "state", b, state), ignore_errors=True)


def run_build(cmd, logfile):
    with open(logfile, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        t = time.perf_counter()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        return rc, time.perf_counter() - t


def tail(path, n=8):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def steps_from_log(path):
    """(cached, total) build steps other than FROM, from --progress=plain output (both builders
    print "#N [stage i/n] INSTRUCTION" headers and "#N CACHED")."""
    steps, cached = set(), set()
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"#(\d+) \[([^\]]+)\] (\S+)", line)
            if m and "internal" not in m.group(2) and m.group(3) != "FROM":
                steps.add(m.group(1))
            m = re.match(r"#(\d+) CACHED\s*$", line)
            if m:
                cached.add(m.group(1))
    return len(steps & cached), len(steps)


def edit_src(p):
    with open(os.path.join(CI_PROJECTS, p, "src", "main.js"), "a") as f:
        f.write(f"// edit {time.time_ns()}\n")


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--scenarios", required=True)
    ap.add_argument("--builders", required=True)
    ap.add_argument("--runs", type=int, required=True)
    a = ap.parse_args()
    p, raw = a.project, a.raw
    scenarios = [s for s in ("ci-full-hit", "ci-edit") if s in a.scenarios.split(",")]
    builders = [b for b in a.builders.split(",") if b]
    os.makedirs(LOGS, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)

    def note(msg):
        with open(os.path.join(raw, "notes.md"), "a") as f:
            f.write(f"- {msg}\n")
        log(msg)

    def mark(s, b, why):
        with open(os.path.join(raw, "status.tsv"), "a") as f:
            f.write(f"{p}\t{s}\t{b}\t{why}\n")

    walk("busybox", "latest")
    # Runner A, once per builder: empty store, cache export, push.
    ok = []
    for b in builders:
        log(f"{p} / ci: runner A ({b}), untimed")
        reset(b, "ci-a")
        lf = os.path.join(LOGS, f"{p}-A-{b}.log")
        rc, t = run_build(command(b, p, "ci-a", "a", os.path.join(OUT, f"{p}-A-{b}.json"), False), lf)
        drop(b, "ci-a")
        if rc != 0:
            note(f"{p} / ci: runner A ({b}) failed (exit {rc}); see results/raw/logs/ci/{p}-A-{b}.log: "
                 + tail(lf, 4).replace("\n", " ")[:400])
            for s in scenarios:
                mark(s, b, "runner A failed")
            continue
        repo, cache = names(b, p)
        walk(repo, "a"); walk(repo, cache.rsplit(":", 1)[1])
        ok.append(b)
    proxy_stats(reset=True)

    for s in scenarios:
        with open(os.path.join(raw, "order.tsv"), "a") as f:
            f.write(f"{p}\t{s}\n")
        runs = {b: [] for b in ok}
        failed = set()
        for i in range(1, a.runs + 1):
            order = ok if i % 2 else list(reversed(ok))
            for b in order:
                if b in failed:
                    continue
                if s == "ci-edit":
                    edit_src(p)
                bk_start = reset(b, "ci-b")
                subprocess.run(["sync"], check=True)
                proxy_stats(reset=True)
                md = os.path.join(OUT, f"{p}-{s}-{b}-{i}.json")
                lf = os.path.join(LOGS, f"{p}-{s}-{b}-{i}.log")
                log(f"{p} / {s} / {b}  run {i}/{a.runs}")
                rc, t = run_build(command(b, p, "ci-b", f"{s}-{i}", md, True), lf)
                st = proxy_stats(reset=True)
                drop(b, "ci-b")
                if rc != 0:
                    failed.add(b)
                    mark(s, b, "failed")
                    note(f"{p} / {s}: {b} run {i} failed (exit {rc}); see results/raw/logs/ci/{p}-{s}-{b}-{i}.log: "
                         + tail(lf, 4).replace("\n", " ")[:400])
                    continue
                repo, cache = names(b, p)
                walk(repo, f"{s}-{i}"); walk(repo, cache.rsplit(":", 1)[1])
                c = classify(st)
                cached, total = steps_from_log(lf)
                r = {"run": i, "time": t, "bk_start": bk_start, "down": c["down"], "up": c["up"],
                     "totals": st["totals"], "heads": st["heads"], "mounts": st["mounts"],
                     "orphan_upload_bytes": st["orphan_upload_bytes"], "blobs": c["blobs"],
                     "steps_cached": cached, "steps_total": total}
                if b == "strata":
                    try:
                        with open(md) as f:
                            m = json.load(f)
                        r["strata_md"] = {"pulled": m.get("strata.bytes.pulled"), "pushed": m.get("strata.bytes.pushed"),
                                          "steps": m.get("strata.steps")}
                    except (OSError, ValueError) as e:
                        r["strata_md"] = {"error": str(e)}
                runs[b].append(r)
                log(f"{p} / {s} / {b}  run {i}: {t:.2f} s; layer bytes down {c['down']['layer']} up {c['up']['layer']}, "
                    f"other down {c['down']['other']} up {c['up']['other']}; steps cached {cached}/{total}")
        for b in ok:
            if b in failed or not runs[b]:
                continue
            with open(os.path.join(raw, f"{p}__{s}__{b}.json"), "w") as f:
                json.dump({"results": [{"command": b, "times": [r["time"] for r in runs[b]]}]}, f)
            with open(os.path.join(raw, f"{p}__{s}__{b}.ci.json"), "w") as f:
                json.dump({"project": p, "scenario": s, "builder": b, "runs": runs[b]}, f, indent=1)


if __name__ == "__main__":
    main()
