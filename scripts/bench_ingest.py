"""Ingesting prompt logs of any size: time and peak memory at 10k, 100k and 1M lines.

For each size, a prompts file of generated log lines (chat messages and plain prompts with metadata, 5% exact
duplicates) is ingested into a fresh run pool (tao/pool.py: streamed, validated line by line, deduplicated by
hashing against an index on disk), then a round's prompts are sampled from it. Each measurement runs in its own
process, so its peak resident memory (VmHWM) is its own. The baseline, measured in the same run, is the
in-memory reader (`tao.core.prompts.load_prompts`, which `tao explore`, `tao compare` and `tao sft` use for their
smaller files, and which `tao run` used before the pool).

    python scripts/bench_ingest.py [--sizes 10000,100000,1000000] [--formats jsonl,jsonl.gz,csv,parquet,datasets]
                                   [--format-lines 100000] [--out docs/results/bench_ingest.json]

Prints a table and the growth ratios (time should grow linearly with the lines, memory should stay flat). Then the
same log at --format-lines in each format `tao run --prompts` reads (gzip'd JSONL, CSV with the messages as JSON
text, Parquet, a dataset saved with `datasets`), each ingested into a fresh pool, with its time and peak memory
as a ratio to the plain JSONL file's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ("refund", "invoice", "password reset", "shipping delay", "API rate limit", "SSO login", "data export")


def write_log(path: Path, lines: int, seed: int = 0) -> None:
    """Generated log lines: 5% repeat an earlier line's conversation exactly (with a new request id)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for n in range(lines):
            source = rng.randrange(n) if n and rng.random() < 0.05 else n
            topic = TOPICS[source % len(TOPICS)]
            question = f"Customer #{source}: my {topic} issue is still open after {source % 97} days. What now?"
            if source % 3 == 0:
                row = {"prompt": question, "team": "support", "ticket": source}
            else:
                row = {
                    "messages": [
                        {"role": "system", "content": "You are our support assistant."},
                        {"role": "user", "content": question},
                    ],
                    "team": "billing",
                }
            fh.write(json.dumps({"custom_id": f"req-{n}", **row}) + "\n")


def convert(log: Path, fmt: str, out: Path) -> Path:
    """The JSONL log in another format (the rows as a user's export would hold them)."""
    if fmt == "jsonl":
        return log
    if fmt == "jsonl.gz":
        import gzip
        import shutil

        target = out / "logs.jsonl.gz"
        with open(log, "rb") as src, gzip.open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return target
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    columns = ["custom_id", "prompt", "messages", "team", "ticket"]
    if fmt == "csv":
        import csv

        target = out / "logs.csv"
        with open(target, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "messages": json.dumps(row["messages"]) if "messages" in row else ""})
        return target
    full = [{c: row.get(c) for c in columns} for row in rows]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = out / "logs.parquet"
        pq.write_table(pa.Table.from_pylist(full), target)
        return target
    if fmt == "datasets":
        import datasets

        target = out / "logs-dataset"
        datasets.Dataset.from_list(full).save_to_disk(str(target))
        return target
    raise SystemExit(f"unknown format {fmt!r}")


def measure(mode: str, prompts: Path, work: Path) -> dict:
    """Runs in a child process: one ingest (pool or in-memory), then its peak memory."""
    from collections import Counter

    from tao.core.prompts import load_prompts
    from tao.run.pool import Pool

    started = time.perf_counter()
    if mode == "memory":
        loaded = load_prompts(prompts)
        out = {"prompts": len(loaded.prompts), "duplicates": loaded.duplicates}
    else:
        pool = Pool(work / "pool.sqlite")
        with pool.ingest(prompts, 0.2, 0) as version:
            pass
        pool.settle()
        out = {"prompts": version.prompts, "duplicates": version.duplicates}
        out["ingest_seconds"] = time.perf_counter() - started
        picked = time.perf_counter()
        chosen, _ = pool.pick(32, 0, 1, Counter(), lambda p: True)
        out["pick_seconds"] = time.perf_counter() - picked
        out["picked"] = len(chosen)
        out["pool_mib"] = (work / "pool.sqlite").stat().st_size / 2**20
        pool.close()
    out["seconds"] = time.perf_counter() - started
    out["peak_mib"] = _peak_mib()
    return out


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, prompts: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work:
        command = [sys.executable, __file__, "--child", mode, str(prompts), work]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{mode} ingest of {prompts} failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(rows: list[dict], key: str) -> list[float]:
    return [round(b[key] / a[key], 2) for a, b in zip(rows, rows[1:], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench_ingest.json")
    parser.add_argument("--formats", default="jsonl,jsonl.gz,csv,parquet,datasets")
    parser.add_argument("--format-lines", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-logs-") as tmp:
        for lines in sizes:
            log = Path(tmp) / f"logs-{lines}.jsonl"
            write_log(log, lines)
            pool, memory = child("pool", log), child("memory", log)
            rows.append({"lines": lines, "file_mib": log.stat().st_size / 2**20, "pool": pool, "in_memory": memory})
            log.unlink()
            print(
                f"{lines:>9} lines: pool {pool['seconds']:.1f} s, peak {pool['peak_mib']:.0f} MiB "
                f"(pick 32: {pool['pick_seconds']:.2f} s) | in memory {memory['seconds']:.1f} s, "
                f"peak {memory['peak_mib']:.0f} MiB",
                flush=True,
            )
    pools, memories = [r["pool"] for r in rows], [r["in_memory"] for r in rows]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": rows,
        "growth": {
            "pool_time": ratio(pools, "seconds"),
            "pool_peak_memory": ratio(pools, "peak_mib"),
            "in_memory_time": ratio(memories, "seconds"),
            "in_memory_peak_memory": ratio(memories, "peak_mib"),
        },
        "pool_vs_in_memory_peak": [
            round(p["peak_mib"] / m["peak_mib"], 3) for p, m in zip(pools, memories, strict=False)
        ],
    }
    result["formats"] = formats(args.formats.split(","), args.format_lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| lines | pool: time | pool: peak memory | round pick | in memory: time | in memory: peak memory |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        p, m = r["pool"], r["in_memory"]
        print(
            f"| {r['lines']:,} | {p['seconds']:.1f} s | {p['peak_mib']:.0f} MiB | {p['pick_seconds']:.2f} s "
            f"| {m['seconds']:.1f} s | {m['peak_mib']:.0f} MiB |"
        )
    g = result["growth"]
    print(f"\ngrowth per 10x lines: pool time x{g['pool_time']}, pool peak memory x{g['pool_peak_memory']}")
    print(f"in memory (baseline): time x{g['in_memory_time']}, peak memory x{g['in_memory_peak_memory']}")
    print(f"pool peak memory / in-memory peak memory: {result['pool_vs_in_memory_peak']}")
    print(f"\n| format ({args.format_lines:,} lines) | file | pool: time | peak memory | time, memory vs JSONL |")
    print("|---|---|---|---|---|")
    for fmt, r in result["formats"].items():
        print(
            f"| {fmt} | {r['file_mib']:.1f} MiB | {r['pool']['seconds']:.1f} s | {r['pool']['peak_mib']:.0f} MiB "
            f"| x{r['time_vs_jsonl']:.2f}, x{r['peak_vs_jsonl']:.2f} |"
        )
    print(f"wrote {args.out}")


def formats(names: list[str], lines: int) -> dict:
    """Each format's pool ingest of the same log, against the JSONL file's in the same run."""
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-formats-") as tmp:
        log = Path(tmp) / "logs.jsonl"
        write_log(log, lines)
        for fmt in ["jsonl", *[n for n in names if n != "jsonl"]]:
            source = convert(log, fmt, Path(tmp))
            size = sum(p.stat().st_size for p in source.rglob("*")) if source.is_dir() else source.stat().st_size
            pool = child("pool", source)
            out[fmt] = {"file_mib": size / 2**20, "pool": pool}
            print(f"{fmt:>9}: {pool['seconds']:.1f} s, peak {pool['peak_mib']:.0f} MiB", flush=True)
    base = out["jsonl"]["pool"]
    for r in out.values():
        r["time_vs_jsonl"] = round(r["pool"]["seconds"] / base["seconds"], 3)
        r["peak_vs_jsonl"] = round(r["pool"]["peak_mib"] / base["peak_mib"], 3)
    return out


if __name__ == "__main__":
    main()
