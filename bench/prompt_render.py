"""What naming a registry prompt costs a chat request, in-process: resolving the label (the epoch read,
the cached route), checking the variables and rendering, against the same request sent with its messages.

    .venv/bin/python -m bench.prompt_render [--calls 2000]

On a fresh SQLite file: the bench's prompt (a system message and a templated question, as in
bench/gateway_overhead/), resolved by label through `PromptRenderer.apply` as the OpenAI route does.
Three cases: the label's route cached (the usual case: one primary-key read of the epoch), the label
moved before every call (the route read again), and the same messages sent directly (only the request
model is built). CPU time of this process per call (time.process_time), so other work on a shared
machine inflates it less than wall time; wall time is reported too. The end-to-end view, with the
server, is `python -m bench.gateway_overhead --prompt-only`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import write_results
from keel.config import AliasSettings, DeploymentSettings
from keel.gateway.protocol import ChatCompletionRequest
from keel.governance.audit import AuditLog
from keel.prompts.fit import ContextBudgets
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.render import PromptRenderer
from keel.prompts.resolver import PromptResolver
from keel.prompts.spec import PromptSpec
from keel.store.engine import Database

SYSTEM = "You are a helpful support assistant for an e-bike shop."
QUESTION = "How long does a full charge of the battery take?"
ADMIN = Actor("bench", admin=True)


class _Deployment:
    def __init__(self) -> None:
        self.settings = DeploymentSettings(provider="openai", model="mock", context_window=8192)
        self.provider = object()


def measure(call: Callable[[], Any], calls: int) -> dict[str, float]:
    cpu, wall = [], []
    for _ in range(calls):
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        call()
        cpu.append((time.process_time() - started_cpu) * 1e6)
        wall.append((time.perf_counter() - started_wall) * 1e6)
    cpu.sort()
    wall.sort()
    return {
        "cpu_us_mean": statistics.fmean(cpu),
        "wall_us_p50": wall[len(wall) // 2],
        "wall_us_p95": wall[int(len(wall) * 0.95)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'keel.db'}")
        database.migrate()
        registry = PromptRegistry(database, AuditLog(database))
        spec = PromptSpec.model_validate(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "{{ question }}"},
                ],
                "variables": {
                    "type": "object",
                    "required": ["question"],
                    "properties": {"question": {"type": "string"}},
                },
            }
        )
        registry.push("bench", "bench-support", spec, ADMIN)
        registry.push("bench", "bench-support", spec.model_copy(update={"model": "bench"}), ADMIN)
        registry.move_label("bench", "bench-support", "bench", 1, ADMIN)
        budgets = ContextBudgets({"bench": AliasSettings(deployments=["mock"])}, {"mock": _Deployment()})
        renderer = PromptRenderer(PromptResolver(database), budgets, 64)
        named = ChatCompletionRequest.model_validate(
            {
                "model": "bench",
                "prompt": {"name": "bench-support", "label": "bench", "variables": {"question": QUESTION}},
                "max_tokens": 64,
            }
        )
        direct_body = {
            "model": "bench",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
            "max_tokens": 64,
        }
        rendered, _ = renderer.apply(named, "bench")
        assert [m.text() for m in rendered.messages] == [SYSTEM, QUESTION]
        for _ in range(100):
            renderer.apply(named, "bench")
        moves = iter(range(10**9))

        def moved_then_apply() -> None:
            registry.move_label("bench", "bench-support", "bench", 1 + next(moves) % 2, ADMIN)
            started = time.process_time()
            renderer.apply(named, "bench")
            moved_cpu.append((time.process_time() - started) * 1e6)

        moved_cpu: list[float] = []
        results = {
            "cached_route": measure(lambda: renderer.apply(named, "bench"), args.calls),
            "messages_sent_directly": measure(
                lambda: ChatCompletionRequest.model_validate(direct_body), args.calls
            ),
        }
        measure(moved_then_apply, max(200, args.calls // 10))
        results["label_moved_before_each_call"] = {"cpu_us_mean": statistics.fmean(moved_cpu)}
        database.dispose()
    data = {"calls": args.calls, "results": results, "load_average": os.getloadavg()}
    write_results("prompt_render", data, table(data))


def table(data: dict[str, Any]) -> str:
    r = data["results"]
    added = r["cached_route"]["cpu_us_mean"] - r["messages_sent_directly"]["cpu_us_mean"]
    lines = [
        f"{data['calls']} calls per case, in-process, SQLite; CPU time of this process per call.",
        "",
        "| case | CPU µs per call (mean) | wall µs p50 | wall µs p95 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case in ("messages_sent_directly", "cached_route"):
        x = r[case]
        lines.append(
            f"| {case.replace('_', ' ')} | {x['cpu_us_mean']:.0f} | {x['wall_us_p50']:.0f} | {x['wall_us_p95']:.0f} |"
        )
    lines.append(
        f"| label moved before each call (the route read again) | {r['label_moved_before_each_call']['cpu_us_mean']:.0f} | - | - |"
    )
    lines += [
        "",
        f"Naming the prompt costs about {added:.0f} µs of CPU per call over sending the messages (label resolution "
        "with its epoch read, variable check, sandboxed rendering).",
        "",
        f"Load average while it ran: {', '.join(f'{x:.2f}' for x in data['load_average'])}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
