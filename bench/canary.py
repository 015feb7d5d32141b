"""Canary releases on synthetic traffic, judged by Keel's own decision code.

    .venv/bin/python -m bench.canary [--canaries 200] [--seed 7] [--rate 10]

Each simulated canary runs with the default rule (`prompts.canary` in keel.config: steps, minimum calls
and duration, false-rollback rate). Calls arrive at `--rate` per second from a population of a million
end users; each call goes to the canary or the stable version by Keel's sticky assignment
(keel.prompts.assignment, hashing the canary's id with the user), and its outcome is drawn from the
version's rates: errors, escalations, grounding failures, negative feedback (on 20 % of calls) and a
log-normal latency. Every simulated minute the step is judged by keel.prompts.canary_judge.judge, as
the server's periodic check does. Three worlds: the new version is no worse; its escalation rate is
10 % -> 20 %; its error rate is 1 % -> 5 %.

Sticky assignment is checked on its own: over 10,000 users, the same user always gets the same arm,
and each arm's share (canary steps, and a 50/30/20 experiment) is within one point of its weight.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import write_results
from keel.config import CanarySettings
from keel.prompts.arm_metrics import ArmSample
from keel.prompts.assignment import bucket, in_canary, pick
from keel.prompts.canary_judge import CanaryRule, judge

STABLE = {"error": 0.01, "escalation": 0.10, "grounding": 0.05, "negative": 0.10}
WORLDS = {
    "no regression": {},
    "escalation 10 % -> 20 %": {"escalation": 0.20},
    "errors 1 % -> 5 %": {"error": 0.05},
}
CHECK_EVERY_S = 60.0


@dataclass
class Outcome:
    rolled_back: bool
    requests: int
    canary_requests: int
    seconds: float
    step: int
    metrics: list[str]


def draw(rng: np.random.Generator, sample: ArmSample, n: int, rates: dict[str, float], slow: float) -> None:
    sample.requests += n
    sample.errors += int(rng.binomial(n, rates["error"]))
    sample.replies += n
    sample.escalations += int(rng.binomial(n, rates["escalation"]))
    sample.grounding_failures += int(rng.binomial(n, rates["grounding"]))
    rated = int(rng.binomial(n, 0.2))
    sample.feedback.extend((rng.random(rated) >= rates["negative"]).astype(float).tolist())
    sample.latencies_ms.extend((rng.lognormal(7.0, 0.35, n) * slow).tolist())


def release(
    rng: np.random.Generator, rule: CanaryRule, canary: dict[str, float], rate: float, key: str
) -> Outcome:
    """One canary, step by step, with a check every simulated minute."""
    total = in_canary_total = 0
    seconds = 0.0
    per_check = max(1, round(rate * CHECK_EVERY_S))
    for step, percent in enumerate(rule.steps):
        stable, candidate = ArmSample("stable"), ArmSample("canary")
        elapsed = 0.0
        while True:
            users = rng.integers(0, 1_000_000, per_check)
            chosen = sum(in_canary(key, f"user-{u}", percent) for u in users)
            draw(rng, stable, per_check - chosen, STABLE, 1.0)
            draw(rng, candidate, chosen, canary, 1.0)
            total += per_check
            in_canary_total += chosen
            elapsed += CHECK_EVERY_S
            seconds += CHECK_EVERY_S
            verdict = judge(rule, step, stable, candidate, elapsed)
            if verdict.decision != "hold":
                break
        if verdict.decision == "rollback":
            regressed = [c.metric for c in verdict.checks if c.regressed]
            return Outcome(True, total, in_canary_total, seconds, step, regressed)
    return Outcome(False, total, in_canary_total, seconds, len(rule.steps), [])


def sticky_assignment(users: int = 10_000) -> dict[str, Any]:
    ids = [f"user-{i}" for i in range(users)]
    steps = {}
    for percent in (5.0, 25.0, 50.0):
        first = [in_canary("cny_bench", u, percent) for u in ids]
        again = [in_canary("cny_bench", u, percent) for u in ids]
        share = sum(first) / users
        steps[f"{percent:g}"] = {
            "share": share,
            "off_by_points": round(abs(share - percent / 100) * 100, 3),
            "sticky": first == again,
        }
    weights = [0.5, 0.3, 0.2]
    first_arms = [pick(weights, bucket("exp_bench", u)) for u in ids]
    same = first_arms == [pick(weights, bucket("exp_bench", u)) for u in ids]
    shares = (np.bincount(first_arms, minlength=3) / users).tolist()
    worst = max(abs(s - w) for s, w in zip(shares, weights, strict=True)) * 100
    return {
        "users": users,
        "canary_steps": steps,
        "experiment": {
            "weights": weights,
            "shares": shares,
            "off_by_points": round(worst, 3),
            "sticky": same,
        },
        "all_within_one_point": worst <= 1 and all(s["off_by_points"] <= 1 for s in steps.values()),
        "all_sticky": same and all(s["sticky"] for s in steps.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--canaries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=10.0, help="calls per second through the label")
    args = parser.parse_args()
    settings = CanarySettings()
    rule = CanaryRule(
        steps=settings.steps,
        min_requests=settings.min_requests,
        min_duration_s=settings.min_duration_s,
        false_rollback_rate=settings.false_rollback_rate,
        latency_tolerance=settings.latency_tolerance,
    )
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    worlds = {}
    for world, change in WORLDS.items():
        canary = {**STABLE, **change}
        outcomes = [release(rng, rule, canary, args.rate, f"cny_{world}_{i}") for i in range(args.canaries)]
        rolled = [o for o in outcomes if o.rolled_back]
        worlds[world] = {
            "canaries": len(outcomes),
            "rollback_rate": len(rolled) / len(outcomes),
            "median_requests_to_rollback": statistics.median(o.requests for o in rolled) if rolled else None,
            "median_canary_requests_to_rollback": statistics.median(o.canary_requests for o in rolled)
            if rolled
            else None,
            "median_minutes_to_rollback": statistics.median(o.seconds / 60 for o in rolled)
            if rolled
            else None,
            "rollbacks_by_step": {str(s): sum(o.step == s for o in rolled) for s in range(len(rule.steps))},
            "rollbacks_by_metric": {
                m: sum(m in o.metrics for o in rolled) for m in sorted({m for o in rolled for m in o.metrics})
            },
            "median_requests_to_promote": statistics.median(o.requests for o in outcomes if not o.rolled_back)
            if len(rolled) < len(outcomes)
            else None,
        }
    regressions = [w for w in WORLDS if w != "no regression"]
    regressed_rollbacks = [worlds[w]["median_requests_to_rollback"] for w in regressions]
    data = {
        "rule": rule.model_dump(),
        "calls_per_second": args.rate,
        "seed": args.seed,
        "rollback_rate_with_regression": min(worlds[w]["rollback_rate"] for w in regressions),
        "rollback_rate_without_regression": worlds["no regression"]["rollback_rate"],
        "median_requests_to_rollback": statistics.median(r for r in regressed_rollbacks if r is not None),
        "worlds": worlds,
        "sticky_assignment": sticky_assignment(),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
    }
    write_results("canary", data, table(data))


def table(data: dict[str, Any]) -> str:
    rule = data["rule"]
    lines = [
        f"{data['worlds']['no regression']['canaries']} simulated canaries per world, default rule: steps "
        f"{', '.join(f'{s:g} %' for s in rule['steps'])}, then promotion; a step is judged once each version "
        f"has {rule['min_requests']} calls and {rule['min_duration_s']:g} s passed; false-rollback rate "
        f"{rule['false_rollback_rate']} over the release ({data['calls_per_second']:g} calls/s, a check a minute).",
        "",
        "| world | rolled back | median calls to rollback (canary's) | median minutes | by step | by metric |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for world, w in data["worlds"].items():
        calls = (
            f"{w['median_requests_to_rollback']:.0f} ({w['median_canary_requests_to_rollback']:.0f})"
            if w["median_requests_to_rollback"] is not None
            else "-"
        )
        minutes = (
            f"{w['median_minutes_to_rollback']:.0f}" if w["median_minutes_to_rollback"] is not None else "-"
        )
        by_step = ", ".join(f"{int(s) + 1}: {n}" for s, n in w["rollbacks_by_step"].items())
        by_metric = ", ".join(f"{m}: {n}" for m, n in w["rollbacks_by_metric"].items()) or "-"
        lines.append(
            f"| {world} | {w['rollback_rate']:.1%} | {calls} | {minutes} | {by_step} | {by_metric} |"
        )
    sticky = data["sticky_assignment"]
    shares = ", ".join(f"{p} %: {s['share']:.2%}" for p, s in sticky["canary_steps"].items())
    lines += [
        "",
        f"Headline: rolled back with a regression {data['rollback_rate_with_regression']:.1%} (the worse of the "
        f"two), without one {data['rollback_rate_without_regression']:.1%}; median calls to rollback "
        f"{data['median_requests_to_rollback']:.0f}.",
        "",
        f"Sticky assignment over {sticky['users']} users: canary shares {shares}; experiment 50/30/20 got "
        f"{', '.join(f'{s:.2%}' for s in sticky['experiment']['shares'])}; every share within one point: "
        f"{sticky['all_within_one_point']}; every user always in the same arm: {sticky['all_sticky']}.",
        "",
        f"Load average while it ran: {', '.join(f'{x:.2f}' for x in data['load_average'])}; {data['seconds']} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
