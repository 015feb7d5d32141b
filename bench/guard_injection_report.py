"""The Markdown tables of `bench/guard_injection.py`'s results."""

from __future__ import annotations

from typing import Any


def _pct(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "-" if value is None else f"{100 * value['share']:.1f} % (n={value['n']})"


def tables(data: dict[str, Any]) -> str:
    split = data["split"]
    sizes = data["test_sizes"]
    public = data.get("public", {})
    unseen = public.get("unseen_source", "pyrit")
    lines = [
        f"Test part of the split `{split['seed']}` (train/tune/test {split['shares']}); the shipped model was "
        "fitted on train, its C, Platt scaling and thresholds chosen on tune; nothing here was tuned on. "
        f"Held-out BIPIA categories: {', '.join(split['bipia_categories']['test'])}. Sizes: "
        + ", ".join(f"{k} {v}" for k, v in sizes.items())
        + ".",
        "",
        *(f"- Look at the test part, {look}" for look in data.get("looks_at_test", [])),
        "",
        *(
            [
                f"Prompt collections shipped in PyPI packages: {', '.join(public['fitted_sources'])} in train "
                f"and tune only (split by family); {unseen} never fitted or tuned on, all of it a test set of "
                f"its own, less {public['unseen_dropped_as_near_duplicates']} rows that are near-duplicates of "
                f"the others' (sizes by part: {public['sizes']}).",
                "",
            ]
            if public
            else []
        ),
        "## Direct injection: the decision each path makes",
        "",
        "| path | detector | threshold | deepset injections refused/escalated | templated attacks | "
        "ordinary prompts (banking77) flagged | plain requests (BIPIA tasks asked directly) flagged | "
        "deepset benign flagged | benign with trigger words flagged | "
        f"{unseen} (unseen package) attacks refused/escalated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in data["quality"].items():
        messages = result["messages"]
        for path, key in (("API refuses", "api_refuses"), ("copilot escalates", "copilot_escalates")):
            row = messages[key]
            threshold = messages["thresholds"]["block" if key == "api_refuses" else "escalate"]
            lines.append(
                f"| {path} | {name} | {threshold:.3f} | {_pct(row, 'deepset_recall')} | "
                f"{_pct(row, 'templated_recall')} | {_pct(row, 'ordinary_flagged')} | {_pct(row, 'requests_flagged')} | "
                f"{_pct(row, 'deepset_flagged')} | {_pct(row, 'trigger_words_flagged')} | "
                f"{_pct(row, f'unseen_{unseen}_recall')} |"
            )
    lines += [
        "",
        "Scores of all test messages, threshold-free (the verdict score: 0.95 for a rule hit):",
        "",
        "| detector | AUC | average precision | Brier | expected calibration error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result in data["quality"].items():
        r = result["messages"]["ranking"]
        lines.append(
            f"| {name} | {r['auc']:.3f} | {r['average_precision']:.3f} | {r['brier']:.3f} | {r['ece']:.3f} |"
        )
    lines += [
        "",
        "## Indirect injection in passages (BIPIA recipe on held-out categories and contexts)",
        "",
        "| detector | threshold | poisoned caught | attack removed or passage dropped | clean e-mails flagged | "
        "clean web pages flagged | poisoned: kept / neutralised / dropped | clean words kept when neutralised |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in data["quality"].items():
        p = result["passages"]
        poisoned = p["poisoned"]
        actions = poisoned["actions"]
        lines.append(
            f"| {name} | {p['threshold']:.3f} | {100 * poisoned['flagged']:.1f} % (n={poisoned['n']}) | "
            f"{100 * poisoned['attack_removed_or_dropped']:.1f} % | "
            f"{100 * p['clean_emails']['flagged']:.1f} % (n={p['clean_emails']['n']}) | "
            f"{100 * p['clean_pages']['flagged']:.1f} % (n={p['clean_pages']['n']}) | "
            f"{actions.get('kept', 0)} / {actions.get('neutralised', 0)} / {actions.get('dropped', 0)} | "
            f"{100 * poisoned['clean_text_kept_when_neutralised']:.1f} % |"
        )
    shipped = next(iter(data["quality"].values()))["passages"]["poisoned"]
    for key in ("recall_by_category", "recall_by_position", "recall_by_source"):
        values = ", ".join(f"{k} {100 * v:.1f} %" for k, v in shipped[key].items())
        lines.append(f"\nShipped model, poisoned passages caught {key[10:].replace('_', ' ')}: {values}.")
    lat = data["latency"]
    load = lat["load_average"]
    lines += [
        "",
        "## Latency (one message or one passage per call, warm)",
        "",
        *(
            [
                "Timed in a later run than the quality figures above (those were measured at "
                f"{data['quality_measured_at']}).",
                "",
            ]
            if "quality_measured_at" in data
            else []
        ),
        f"Load average (1/5/15 min) {load['before'][0]:.2f}/{load['before'][1]:.2f}/{load['before'][2]:.2f} "
        f"before and {load['after'][0]:.2f}/{load['after'][1]:.2f}/{load['after'][2]:.2f} after timing, on "
        f"{data['cpus']} CPUs. Targets (at low load): p95 <= {data['targets']['message_p95_ms']:.0f} ms per "
        f"message, <= {data['targets']['passage_p95_ms']:.0f} ms per passage.",
        "",
        f"Wall time, and the process's CPU time per call (the model runs on {lat['torch_threads']} threads). "
        + (
            "On a machine this loaded both are inflated many times over (waiting threads spin and count as "
            "CPU time); they compare the paths with each other, not with the targets."
            if max(load["before"][0], load["after"][0]) >= data["cpus"]
            else "The machine was otherwise idle: these are the figures to hold against the targets."
        ),
        "",
        "| path | n | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in lat["paths"].items():
        lines.append(
            f"| {name} | {row['n']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['cpu_p50_ms']:.1f} | "
            f"{row['cpu_p95_ms']:.1f} |"
        )
    return "\n".join(lines)
