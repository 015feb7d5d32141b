"""How well the embedded model calls tools: for each question, does its call parse, match the tool's
schema, name the right tool, and carry the question's key value in its arguments; and how long it takes.

    .venv/bin/python -m bench.local_tool_calls

The shipped settings, nothing tuned on these cases: the local provider with three tools, `tool_choice`
left to `auto` (the rule: call a tool) and `parallel_tool_calls` left on (at most 4 calls), temperature 0.
Well formed and schema-valid come from the grammar; the right tool and the right value are the model's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import write_results
from keel.config import Settings
from keel.errors import KeelError
from keel.gateway.protocol import ChatMessage, Tool
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.providers.local import LocalChatProvider
from keel.gateway.tools import check_tool_calls


def _tool(name: str, description: str, argument: str, about: str) -> Tool:
    parameters = {"type": "object", "properties": {argument: {"type": "string", "description": about}}}
    parameters["required"] = [argument]
    return Tool.model_validate(
        {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
    )


TOOLS = [
    _tool("get_weather", "The current weather in a city.", "city", "The city's name"),
    _tool("find_order", "Look up an order by its number.", "order_id", "The order number, like A-1234"),
    _tool("reset_password", "Send a password reset link.", "email", "The account's email address"),
]
# (question, the tool it needs, a value its arguments should hold)
CASES = [
    ("What is the weather in Paris right now?", "get_weather", "Paris"),
    ("Is it raining in London?", "get_weather", "London"),
    ("How warm is it in Madrid today?", "get_weather", "Madrid"),
    ("Tell me the forecast for Berlin.", "get_weather", "Berlin"),
    ("Where is my order A-1234?", "find_order", "A-1234"),
    ("Has order B-7781 shipped yet?", "find_order", "B-7781"),
    ("Can you check the status of order C-5520?", "find_order", "C-5520"),
    ("I want to know where order D-9012 is.", "find_order", "D-9012"),
    ("I forgot my password, my email is ana@example.com", "reset_password", "ana@example.com"),
    ("Please reset the password for bob@example.org", "reset_password", "bob@example.org"),
    ("Send a reset link to carla@example.net", "reset_password", "carla@example.net"),
    ("My login fails; reset it for dan@example.com please", "reset_password", "dan@example.com"),
]


async def run_case(model: LocalChatProvider, question: str) -> tuple[Any, float]:
    request = GenerationRequest(
        messages=[ChatMessage(role="user", content=question)], tools=TOOLS, temperature=0, max_tokens=160
    )
    started = time.perf_counter()
    try:
        generation = await model.complete(request)
        check_tool_calls(generation.tool_calls, request)
        return generation, time.perf_counter() - started
    except KeelError as exc:
        return exc, time.perf_counter() - started


def main() -> None:
    settings = Settings()
    model = LocalChatProvider(
        Path(settings.chat.resolved_model_path()),
        n_ctx=settings.chat.n_ctx,
        n_threads=settings.chat.n_threads,
        default_max_tokens=160,
    )
    model.warm_up()
    rows: list[dict[str, Any]] = []
    seconds: list[float] = []
    for question, tool, value in CASES:
        result, elapsed = asyncio.run(run_case(model, question))
        seconds.append(elapsed)
        if isinstance(result, KeelError):
            rows.append({"question": question, "valid": False, "error": result.message})
            continue
        first = result.tool_calls[0]
        rows.append(
            {
                "question": question,
                "valid": True,
                "calls": len(result.tool_calls),
                "right_tool": first.function.name == tool,
                "right_value": value.lower() in first.function.arguments.lower(),
                "first_call": f"{first.function.name}({first.function.arguments})",
            }
        )
    n = len(rows)
    totals = {
        "cases": n,
        "valid": sum(r["valid"] for r in rows),
        "right_tool": sum(r.get("right_tool", False) for r in rows),
        "right_tool_and_value": sum(r.get("right_tool", False) and r.get("right_value", False) for r in rows),
        "single_call": sum(r.get("calls") == 1 for r in rows),
        "seconds_median": statistics.median(seconds),
        "seconds_max": max(seconds),
        "load_average_1min": Path("/proc/loadavg").read_text().split()[0],
    }
    table = "\n".join(
        [
            "| cases | parse + schema-valid | right tool | right tool and value | one call | median s | max s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {n} | {totals['valid']} | {totals['right_tool']} | {totals['right_tool_and_value']} "
            f"| {totals['single_call']} | {totals['seconds_median']:.1f} | {totals['seconds_max']:.1f} |",
            "",
            f"1-minute load average at the end: {totals['load_average_1min']}.",
            "",
            "| question | first call |",
            "| --- | --- |",
            *(f"| {r['question']} | `{r.get('first_call', r.get('error'))}` |" for r in rows),
        ]
    )
    write_results("local_tool_calls", {"totals": totals, "rows": rows}, table)


if __name__ == "__main__":
    main()
