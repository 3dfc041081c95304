#!/usr/bin/env python3
"""bench/report.py RUNS OUT REPEAT SECONDS BACKLOG: the table of bench/run.

Reads the per-run JSON files bench/run wrote to RUNS and writes OUT/results.json,
OUT/results.md and OUT/sweep.dat (for the plot). Figures are medians over the
repeats with their spread (min-max); ratios are of medians measured in this run.
"""
import glob
import json
import os
import platform
import statistics
import sys
from datetime import datetime, timezone

runs, out, repeat, seconds, backlog = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


def load(pattern):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(runs, pattern)))]


def dig(r, path):
    for k in path.split("."):
        r = r[k]
    return float(r)


def figure(rows, path, scale=1.0):
    values = [dig(r, path) * scale for r in rows]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


raw = load("raw-*.json")
closed = load("closed-*.json")
nobatch = load("nobatch-*.json")
open_loop = load("open-*.json")
lanes2_closed = load("lanes2-closed-*.json")
lanes2_open = load("lanes2-open-*.json")
pull = load("pull-*.json")
conns = load("conns-[0-9]*.json")
sweep = sorted(load("sweep-*.json"), key=lambda r: r["senders"])

f = {
    "raw_rows_per_s": figure(raw, "rows_per_s"),
    "im_msgs_per_s": figure(closed, "throughput_msgs_per_s"),
    "im_ack_p50_ms": figure(closed, "ack_latency_us.p50", 1e-3),
    "im_ack_p99_ms": figure(closed, "ack_latency_us.p99", 1e-3),
    "nobatch_msgs_per_s": figure(nobatch, "throughput_msgs_per_s"),
    "open_rate": figure(open_loop, "target_rate"),
    "open_msgs_per_s": figure(open_loop, "throughput_msgs_per_s"),
    "open_ack_p50_ms": figure(open_loop, "ack_latency_us.p50", 1e-3),
    "open_ack_p99_ms": figure(open_loop, "ack_latency_us.p99", 1e-3),
    "open_ack_p999_ms": figure(open_loop, "ack_latency_us.p999", 1e-3),
    "open_delivered_p50_ms": figure(open_loop, "delivery_latency_us.p50", 1e-3),
    "open_delivered_p99_ms": figure(open_loop, "delivery_latency_us.p99", 1e-3),
    "pull_msgs_per_s": figure(pull, "messages_per_s"),
    "connections_held": figure(conns, "held"),
    "kib_per_connection": figure(conns, "kib_per_connection"),
    "held_rt_ack_p99_ms": figure(conns, "rt_ack_p99_us", 1e-3),
    "held_rt_delivered_p99_ms": figure(conns, "rt_delivered_p99_us", 1e-3),
    "cpu_us_per_msg": figure(closed, "server_cpu_us_per_msg"),
    "lanes2_msgs_per_s": figure(lanes2_closed, "throughput_msgs_per_s"),
    "lanes2_cpu_us_per_msg": figure(lanes2_closed, "server_cpu_us_per_msg"),
    "lanes2_open_rate": figure(lanes2_open, "target_rate"),
    "lanes2_open_ack_p50_ms": figure(lanes2_open, "ack_latency_us.p50", 1e-3),
    "lanes2_open_ack_p99_ms": figure(lanes2_open, "ack_latency_us.p99", 1e-3),
    "lanes2_open_delivered_p99_ms": figure(lanes2_open, "delivery_latency_us.p99", 1e-3),
}
med = {k: (v["median"] if v else None) for k, v in f.items()}
ratios = {
    "im_over_raw": med["im_msgs_per_s"] / med["raw_rows_per_s"] if med["raw_rows_per_s"] else None,
    "batching_speedup": med["im_msgs_per_s"] / med["nobatch_msgs_per_s"] if med["nobatch_msgs_per_s"] else None,
    "lanes2_over_raw": (med["lanes2_msgs_per_s"] / med["raw_rows_per_s"]
                        if med["lanes2_msgs_per_s"] and med["raw_rows_per_s"] else None),
    "lanes2_over_one": (med["lanes2_msgs_per_s"] / med["im_msgs_per_s"]
                        if med["lanes2_msgs_per_s"] and med["im_msgs_per_s"] else None),
}
errors = sum(sum(r.get("errors", {}).values()) + r.get("failed", 0) + r.get("unknown", 0)
             for r in closed + nobatch + open_loop + lanes2_closed + lanes2_open)


def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.2f}{unit}"


def spread(k):
    v = f[k]
    return f"{fmt(v['min'])}–{fmt(v['max'])}" if v and v["n"] > 1 else "-"


def met(ok):
    return "yes" if ok else "**no**"


rows = [
    ("1. raw limit: PostgreSQL, 500 rows/transaction, 4 clients (rows/s)", "raw_rows_per_s", "", ""),
    ("2. im durable sends, closed loop, 16 x 64 in flight (msgs/s)", "im_msgs_per_s",
     f"≥ 0.5 × (1): ratio {fmt(ratios['im_over_raw'])}", met((ratios["im_over_raw"] or 0) >= 0.5)),
    ("   send→ack p50 / p99 at full load (ms)", "im_ack_p99_ms", f"p50 {fmt(med['im_ack_p50_ms'])}", ""),
    ("3. im with --batch-max 1 (msgs/s)", "nobatch_msgs_per_s",
     f"(2) ≥ 8 × (3): speed-up {fmt(ratios['batching_speedup'])}×", met((ratios["batching_speedup"] or 0) >= 8)),
    (f"4. open loop at {fmt(med['open_rate'])}/s: send→ack p99 (ms)", "open_ack_p99_ms", "≤ 5 ms",
     met((med["open_ack_p99_ms"] or 1e9) <= 5)),
    ("   send→ack p50 / p99.9 (ms)", "open_ack_p50_ms", f"p99.9 {fmt(med['open_ack_p999_ms'])}", ""),
    ("   send→delivered p99 (ms)", "open_delivered_p99_ms", "≤ 10 ms", met((med["open_delivered_p99_ms"] or 1e9) <= 10)),
    ("   send→delivered p50 (ms)", "open_delivered_p50_ms", "", ""),
    (f"5. pull a {backlog:,}-message backlog, pages of 500 (msgs/s)", "pull_msgs_per_s", "≥ 200,000",
     met((med["pull_msgs_per_s"] or 0) >= 200000)),
    ("6. connections held by one server", "connections_held", "100,000",
     met((med["connections_held"] or 0) >= 100000)),
    ("   server memory per idle connection (KiB)", "kib_per_connection", "≤ 4 KiB",
     met((med["kib_per_connection"] or 1e9) <= 4)),
    ("   round trip while held: send→ack p99 (ms)", "held_rt_ack_p99_ms", "≤ 10 ms",
     met((med["held_rt_ack_p99_ms"] or 1e9) <= 10)),
    ("   round trip while held: send→delivered p99 (ms)", "held_rt_delivered_p99_ms", "", ""),
    ("7. im-server CPU per acked message (µs)", "cpu_us_per_msg", "≤ 10 µs",
     met((med["cpu_us_per_msg"] or 1e9) <= 10)),
    ("2b. (2) with two writer lanes, --pg-writers 2 (msgs/s)", "lanes2_msgs_per_s",
     f"ratio to (1) {fmt(ratios['lanes2_over_raw'])}; {fmt(ratios['lanes2_over_one'])} × (2)", ""),
    ("    im-server CPU per acked message (µs)", "lanes2_cpu_us_per_msg", "", ""),
    (f"4b. two lanes, open loop at {fmt(med['lanes2_open_rate'])}/s: send→ack p99 (ms)",
     "lanes2_open_ack_p99_ms", f"p50 {fmt(med['lanes2_open_ack_p50_ms'])}", ""),
    ("    send→delivered p99 (ms)", "lanes2_open_delivered_p99_ms", "", ""),
]
now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
md = [f"bench/run on {platform.node()} ({os.cpu_count()} cores), {now}: median of {repeat} run(s) of "
      f"{seconds} s each, spread min–max. Errors in the im runs: {errors}.", "",
      "| figure | median | spread | target | met |", "|---|---:|---:|---|---|"]
for label, key, target, ok in rows:
    md.append(f"| {label} | {fmt(med[key])} | {spread(key)} | {target} | {ok} |")
md.append("")
md.append("Sweep (one run each): sending connections × 16 in flight → throughput, send→ack p99")
md.append("")
md.append("| connections | msgs/s | p99 (ms) |")
md.append("|---:|---:|---:|")
with open(os.path.join(out, "sweep.dat"), "w") as dat:
    dat.write("# connections msgs_per_s p99_ms\n")
    for r in sweep:
        p99 = r["ack_latency_us"]["p99"] / 1000
        dat.write(f"{r['senders']} {r['throughput_msgs_per_s']:.0f} {p99:.3f}\n")
        md.append(f"| {r['senders']} | {r['throughput_msgs_per_s']:,.0f} | {p99:.1f} |")
open(os.path.join(out, "results.md"), "w").write("\n".join(md) + "\n")
json.dump({"figures": f, "ratios": ratios, "errors": errors, "repeat": repeat, "seconds": seconds,
           "backlog": backlog, "when": now,
           "sweep": [{"connections": r["senders"], "msgs_per_s": r["throughput_msgs_per_s"],
                      "ack_p99_us": r["ack_latency_us"]["p99"]} for r in sweep]},
          open(os.path.join(out, "results.json"), "w"), indent=2)
