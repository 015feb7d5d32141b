"""The Markdown report: the paths side by side, the added latency, the targets, the semantic cache."""

from __future__ import annotations

from typing import Any

from bench.gateway_overhead.constants import (
    PROMPT,
    TARGET_DEFAULT_SHARE,
    TARGET_GUARDS_OFF_SHARE,
    TARGET_HIT_MS,
    TARGET_THROUGHPUT_RATIO,
)
from bench.gateway_overhead.semantic import HIT_REPEATS, NEAR_MISSES, PARAPHRASES


def user_messages_line(data: dict[str, Any]) -> str:
    count = data.get("user_messages", 0)
    if not count:
        return f"Every request asks the same user message: {PROMPT[1]['content']!r}."
    return (
        f"Each request's user message is the next of {count:,} real customer messages (banking77's "
        "training texts; the system message stays the same), on every path alike: the guards read a new "
        "text each time. The exact-cache row repeats one request."
        + "".join(
            f" `{name}` refused {found['400']} of {sum(found.values())} of them (400, not timed)."
            for name, found in data.get("latency_statuses", {}).items()
            if found.get("400")
        )
    )


def _verdicts(data: dict[str, Any]) -> list[str]:
    """Each of issue #18's targets against LiteLLM in the same run, met or not."""
    through = data["throughput"]
    lines = []
    share = data["keel_to_litellm_added_p50"]
    verdict = "met" if share <= TARGET_DEFAULT_SHARE else "NOT met"
    lines.append(
        f"Keel's added p50 (default config) is {share:.2f}x LiteLLM's (target: at most "
        f"{TARGET_DEFAULT_SHARE:g}x) — {verdict}."
    )
    if "keel_guards_off_to_litellm_added_p50" in data:
        bare = data["keel_guards_off_to_litellm_added_p50"]
        verdict = "met" if bare <= TARGET_GUARDS_OFF_SHARE else "NOT met"
        lines.append(
            f"With its guards off: {bare:.2f}x (target: at most {TARGET_GUARDS_OFF_SHARE:g}x) — {verdict}."
        )
    ratio = through["keel"]["requests_per_s"] / through["litellm"]["requests_per_s"]
    clean = through["keel"]["errors"] == 0
    verdict = "met" if ratio >= TARGET_THROUGHPUT_RATIO and clean else "NOT met"
    lines.append(
        f"Keel's requests/s at {data['settings']['concurrency']} in flight (default config) are {ratio:.2f}x "
        f"LiteLLM's with {through['keel']['errors']} errors (target: at least {TARGET_THROUGHPUT_RATIO:g}x, "
        f"no errors) — {verdict}."
    )
    return lines


def report(data: dict[str, Any]) -> str:
    settings = data["settings"]
    latency, through, rss = data["latency_ms"], data["throughput"], data["rss_mib"]
    names = list(latency)
    labels = {
        "direct": "direct to the mock",
        "keel": "Keel (`keel serve`), default config",
        "keel_guards_off": "Keel, guards off",
        "keel_prompt": "Keel, the same messages from a registry prompt reference",
        "litellm": "LiteLLM proxy",
    }
    lines = [
        f"Mock OpenAI-compatible upstream on 127.0.0.1 (fixed completion, delay {settings['upstream_delay_ms']:g} ms); "
        f"load from a separate raw-asyncio client process. Latency: 1 in flight, {settings['rounds']} interleaved rounds "
        f"x {settings['per_round']} requests per path after {settings['warmup']} warm-up. Throughput: {settings['concurrency']} "
        f"in flight for {settings['seconds']:g} s per path, split into the same rounds (2 s warm-up before the first, 1 s before "
        f'the others). Keel bypasses its cache (`"cache": false`).',
        "",
        user_messages_line(data),
        "",
    ]
    if data.get("litellm_problem"):
        lines += [f"**LiteLLM not measured:** {data['litellm_problem']}", ""]
    elif "litellm_version" in data:
        lines += [
            f"LiteLLM {data['litellm_version']} (own venv), `--num_workers 1`, master key, no database.",
            "",
        ]
    lines += [
        "| path | p50 ms | p95 ms | p99 ms | req/s at "
        f"{settings['concurrency']} in flight | p50 / p99 ms under load | errors | proxy CPU ms / request, 1 / {settings['concurrency']} in flight | RSS MiB after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        stats, load = latency[name], through[name]
        memory = f"{rss[name]:.0f}" if name in rss else "-"
        single = data["cpu_ms_per_request_1_in_flight"]
        cpu = f"{single[name]:.2f} / {load['cpu_ms_per_request']:.2f}" if name in single else "-"
        lines.append(
            f"| {labels[name]} | {stats['p50']:.2f} | {stats['p95']:.2f} | {stats['p99']:.2f} | "
            f"{load['requests_per_s']:.0f} | {load['p50_ms']:.1f} / {load['p99_ms']:.1f} | {load['errors']} | {cpu} | {memory} |"
        )
    lines += [
        "",
        "Added latency over direct (1 in flight):",
        "",
        "| proxy | p50 ms | p95 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    added = data["added_latency_ms"]
    for name in names[1:]:
        lines.append(
            f"| {labels[name]} | {added[name]['p50']:.2f} | {added[name]['p95']:.2f} | {added[name]['p99']:.2f} |"
        )
    if "litellm" in added:
        lines += ["", *_verdicts(data)]
    if data.get("keel_guards_off_config"):
        switched = data["keel_guards_off_config"].replace("\n", " ").strip()
        lines += ["", f'"Guards off" is the same Keel with `{switched}` in its keel.toml.']
    if "keel_prompt" in added:
        rendering = {q: added["keel_prompt"][q] - added["keel"][q] for q in ("p50", "p95")}
        lines += [
            "",
            f'Naming a registry prompt instead of sending the messages (`"prompt": {{"name", "label", '
            f'"variables"}}`: label resolution, variable check, sandboxed rendering) adds {rendering["p50"]:.2f} ms '
            f"at p50 and {rendering['p95']:.2f} ms at p95 over the same messages sent directly.",
        ]
    hit = data["keel_exact_hit_ms"]
    lines += [
        "",
        f"Keel answering from its exact cache (no upstream call): p50 {hit['p50']:.2f} ms, "
        f"p95 {hit['p95']:.2f} ms, p99 {hit['p99']:.2f} ms (target: p50 under {TARGET_HIT_MS:g} ms — "
        f"{'met' if hit['p50'] < TARGET_HIT_MS else 'NOT met'}); the client's own round trip is in it.",
        "",
        "Proxy CPU per request: the proxy's process-tree CPU time over the latency (1 in flight) or throughput runs "
        "divided by the requests it answered (2 cores are shared by the client, the proxy and the mock). "
        "RSS is the whole process tree after the load. Keel's includes the embedded chat and embedding models it "
        "loads at start (used by the local deployment and the semantic cache), not needed by this mock path.",
    ]
    if data.get("semantic"):
        lines += [
            "",
            "## Semantic cache",
            "",
            f"One Keel per threshold, `gateway.cache.semantic = true`, an echoing mock; {len(PARAPHRASES)} paraphrase pairs "
            f"and {len(NEAR_MISSES)} near-miss pairs (bench file). All {len(PARAPHRASES) + len(NEAR_MISSES)} base questions "
            "first (misses), then the probes. A paraphrase hit counts only when served from its own base; a near-miss "
            "served from the cache is a false hit; a base question served from another base's entry is one too. "
            f"Hit latency: each probe that hit, {HIT_REPEATS} more times. Rates are over the pairs whose two questions "
            "were both answered (a guard may refuse one with a 400; those are listed below the table)."
            + (
                f" Measured {data['semantic_measured_at']}, kept from that run (this one ran `--skip-semantic`)."
                if "semantic_measured_at" in data
                else ""
            ),
            "",
            "| threshold | paraphrase hit rate (pairs) | near-miss false-hit rate (pairs) | paraphrases served from a wrong entry | "
            "bases served from another entry | semantic hit p50 / p95 ms | exact hit p50 ms | miss p50 ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in data["semantic"]:
            kinds = run["latency_ms"]
            hit = kinds.get("semantic")
            hit_text = f"{hit['p50']:.2f} / {hit['p95']:.2f} (n={hit['n']})" if hit else "-"
            exact = f"{kinds['exact']['p50']:.2f}" if "exact" in kinds else "-"
            miss = f"{kinds['miss']['p50']:.2f}" if "miss" in kinds else "-"
            lines.append(
                f"| {run['threshold']:.2f} | {run['paraphrase_hit_rate']:.0%} ({run['paraphrase_pairs']}) | "
                f"{run['near_miss_false_hit_rate']:.0%} ({run['near_miss_pairs']}) | "
                f"{run['paraphrase_wrong_entry']} | {run['base_false_hits']} | {hit_text} | {exact} | {miss} |"
            )
        refused = sorted({question for run in data["semantic"] for question in run["refused"]})
        if refused:
            lines += ["", "Refused by Keel (status 400, error code in brackets): " + "; ".join(refused) + "."]
        lines += [
            "",
            "Misses with the semantic cache on include embedding the last user message (all-MiniLM-L6-v2 on CPU).",
        ]
    noise = data["noise"]
    lines += [
        "",
        f"Total run time: {data['total_s']:.0f} s. Other processes on the machine used "
        f"{noise['other_processes_share_of_cores']:.0%} of its cores during the run (1-min load average before: "
        f"{noise['load_1min_before']:.2f}); every number above is noisier the higher that is.",
    ]
    return "\n".join(lines)
