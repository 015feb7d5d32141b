"""The semantic cache: paraphrases that should hit their own base question, near-misses that must not
hit, and the hit latency, one Keel per threshold."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway_overhead.constants import MODEL_ALIAS
from bench.gateway_overhead.loadgen import run_loadgen
from bench.gateway_overhead.processes import wait_idle
from bench.gateway_overhead.rounds import latency_stats, require_ok
from bench.gateway_overhead.servers import keel, keel_toml, mock_upstream
from bench.harness import RESULTS

THRESHOLDS = (0.90, 0.95, 0.98)
HIT_REPEATS = 5

# (base question, the same question asked differently): the paraphrase should be served from the cache.
PARAPHRASES: list[tuple[str, str]] = [
    ("How long does it take to fully charge the battery?", "How many hours does a full battery charge take?"),
    ("What is your return policy?", "Can you explain your policy on returns?"),
    ("Do you ship to Canada?", "Is shipping to Canada available?"),
    ("How do I reset my password?", "What are the steps to reset my password?"),
    ("What are your opening hours on Saturday?", "When are you open on Saturdays?"),
    ("How can I track my order?", "Where can I see the tracking status of my order?"),
    ("Can I pay with PayPal?", "Do you accept PayPal as a payment method?"),
    ("How much does express shipping cost?", "What is the price of express shipping?"),
    ("How do I cancel my subscription?", "What do I need to do to cancel my subscription?"),
    ("Is the warranty transferable to a new owner?", "Can the warranty be transferred to a new owner?"),
    ("What is the maximum speed of the e-bike?", "How fast can the e-bike go at most?"),
    (
        "How should I store the battery over winter?",
        "What is the best way to store the battery during winter?",
    ),
    ("Do you offer student discounts?", "Is there a discount for students?"),
    ("How do I change the delivery address of my order?", "Can I update the shipping address on my order?"),
    ("What is the range of the battery on a single charge?", "How far can I ride on one battery charge?"),
    ("How do I contact customer support?", "What is the best way to reach customer support?"),
    ("Can I test ride a bike before buying?", "Is it possible to take a test ride before I buy a bike?"),
    ("How often should the brakes be serviced?", "How frequently do the brakes need servicing?"),
    ("Are your e-bikes waterproof?", "Are your e-bikes water resistant?"),
    (
        "How do I update the firmware of the display?",
        "What is the procedure for updating the display firmware?",
    ),
]

# (base question, a different question that looks alike): serving the second from the cache is wrong.
NEAR_MISSES: list[tuple[str, str]] = [
    ("What is the status of order 10234?", "What is the status of order 10243?"),
    ("Please refund order 5521.", "Please refund order 5522."),
    ("How much does the City 500 e-bike cost?", "How much does the Trail 700 e-bike cost?"),
    ("Do you ship to Austria?", "Do you ship to Australia?"),
    ("How long does the 500 Wh battery last?", "How long does the 750 Wh battery last?"),
    ("What are your opening hours on Monday?", "What are your opening hours on Sunday?"),
    ("Is the Commuter 3 in stock in size M?", "Is the Commuter 3 in stock in size L?"),
    ("How do I cancel my order?", "How do I return my order?"),
    ("What is the warranty on the motor?", "What is the warranty on the frame?"),
    ("Can I pay by credit card?", "Can I pay by bank transfer?"),
    (
        "Change the delivery date of order 7781 to Friday.",
        "Change the delivery date of order 7781 to Monday.",
    ),
    ("What is the weight limit of the cargo bike?", "What is the weight of the cargo bike?"),
    ("How do I turn on the headlight?", "How do I turn off the headlight?"),
    ("Is the battery included with the Trail 700?", "Is the charger included with the Trail 700?"),
    ("How much is shipping to Berlin?", "How much is shipping to Munich?"),
    (
        "Can I upgrade from the 500 Wh to the 750 Wh battery?",
        "Can I downgrade from the 750 Wh to the 500 Wh battery?",
    ),
    (
        "What tire pressure do you recommend for the road bike?",
        "What tire pressure do you recommend for the mountain bike?",
    ),
    ("Does the Trail 700 have a suspension fork?", "Does the City 500 have a suspension fork?"),
    ("Reset the password for user anna@example.com.", "Reset the password for user anne@example.com."),
    ("Is the store in Hamburg open today?", "Is the store in Hamburg open tomorrow?"),
]


def semantic_run(keel_port: int, key: str, threshold: float) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"}

    def body(question: str, prompt_version: str | None = None) -> dict[str, Any]:
        return {
            "model": MODEL_ALIAS,
            "messages": [
                {"role": "system", "content": "You are a helpful support assistant for an e-bike shop."},
                {"role": "user", "content": question},
            ],
            "max_tokens": 64,
            "temperature": 0,
            **({"prompt_version": prompt_version} if prompt_version else {}),
        }

    bases = [pair[0] for pair in PARAPHRASES + NEAR_MISSES]
    probes = [pair[1] for pair in PARAPHRASES + NEAR_MISSES]
    # Warm-up in its own cache scope (another prompt_version), so it can serve none of the probes.
    warm = [body(f"warm-up question number {i}", "warm-up") for i in range(5)]
    spec = {"host": "127.0.0.1", "port": keel_port, "path": "/v1/chat/completions", "headers": headers}
    result = run_loadgen(
        spec | {"mode": "sequence", "bodies": warm + [body(q) for q in bases] + [body(q) for q in probes]}
    )
    replies = result["replies"][len(warm) :]
    base_replies, probe_replies = replies[: len(bases)], replies[len(bases) :]
    # A guard may refuse a question (a 400 before any model or cache sees it): such pairs are left out.
    refused = sorted(
        {
            f"{question} ({_error_code(reply['text'])})"
            for question, reply in zip(bases + probes, base_replies + probe_replies, strict=True)
            if reply["status"] != 200
        }
    )
    answered = [
        i for i in range(len(bases)) if base_replies[i]["status"] == 200 and probe_replies[i]["status"] == 200
    ]

    def served(reply: dict[str, Any]) -> str | None:
        """The cached base question whose answer came back, if the cache served it."""
        return reply["text"].removeprefix("echo: ") if reply["cache"] not in ("miss", "") else None

    paraphrase_hits = wrong_entry = false_hits = base_false_hits = 0
    details = []
    for i in answered:
        reply = probe_replies[i]
        source = served(reply)
        if i < len(PARAPHRASES) and source is not None:
            if source == bases[i]:
                paraphrase_hits += 1
            else:
                wrong_entry += 1
        elif i >= len(PARAPHRASES) and source is not None:
            false_hits += 1
        base_false_hits += served(base_replies[i]) is not None
        details.append({"probe": probes[i], "base": bases[i], "cache": reply["cache"], "served_from": source})
    paraphrase_pairs = sum(1 for i in answered if i < len(PARAPHRASES))
    near_miss_pairs = len(answered) - paraphrase_pairs

    # Hit latency: the probes that hit, again (exact lookup misses them, the semantic one serves them),
    # and every answered base again (exact hits unless a base was itself answered from another entry).
    hitting = [probes[i] for i in answered if probe_replies[i]["cache"] == "semantic"]
    repeat = run_loadgen(
        spec
        | {
            "mode": "sequence",
            "bodies": [body(q) for q in hitting * HIT_REPEATS + [bases[i] for i in answered]],
        }
    )
    require_ok("keel semantic repeat", repeat["statuses"])
    by_kind: dict[str, list[float]] = {"semantic": [], "exact": [], "miss": []}
    for reply in [*base_replies, *probe_replies, *repeat["replies"]]:
        if reply["status"] == 200:
            by_kind.setdefault(reply["cache"], []).append(reply["ms"])
    return {
        "threshold": threshold,
        "paraphrase_pairs": paraphrase_pairs,
        "near_miss_pairs": near_miss_pairs,
        "paraphrase_hit_rate": paraphrase_hits / max(1, paraphrase_pairs),
        "paraphrase_wrong_entry": wrong_entry,
        "near_miss_false_hit_rate": false_hits / max(1, near_miss_pairs),
        "base_false_hits": base_false_hits,
        "refused": refused,
        "latency_ms": {kind: latency_stats(values) for kind, values in by_kind.items() if values},
        "details": details,
    }


def _error_code(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return text[:80]


def measure_semantic() -> list[dict[str, Any]]:
    """One Keel per threshold in front of an echoing mock, each measured by `semantic_run`."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, mock_upstream(0.0, echo=True) as echo_port:
        for threshold in THRESHOLDS:
            config = keel_toml(echo_port, semantic_threshold=threshold)
            with keel(config, Path(tmp), f"semantic-{threshold}") as (url, key, process, _):
                wait_idle(process.pid)
                runs.append(semantic_run(int(url.rsplit(":", 1)[1]), key, threshold))
    return runs


def keep_semantic_results(data: dict[str, Any]) -> None:
    """`--skip-semantic` keeps the semantic-cache results of the last run that measured them, dated."""
    earlier_file = RESULTS / "gateway_overhead.json"
    if not earlier_file.is_file():
        return
    earlier = json.loads(earlier_file.read_text())
    if earlier.get("semantic"):
        data["semantic"] = earlier["semantic"]
        data["semantic_measured_at"] = earlier.get("semantic_measured_at", earlier["measured_at"])
