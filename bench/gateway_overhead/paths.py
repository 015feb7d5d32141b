"""The paths under test (direct to the mock, Keel, Keel from a registry prompt, Keel with its guards off,
LiteLLM), started for a run, and the request each one is timed with."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.gateway_overhead.constants import LITELLM_MASTER_KEY, MODEL_ALIAS, PROMPT
from bench.gateway_overhead.litellm import find_litellm, litellm_proxy, litellm_version
from bench.gateway_overhead.servers import guards_off_toml, keel, keel_toml, mock_upstream


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    pid: int | None = None

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            **extra,
        }


def start_paths(
    stack: ExitStack,
    workdir: Path,
    delay_ms: float,
    prompt_only: bool,
    litellm: str | None,
    data: dict[str, Any],
) -> list[Target]:
    """Starts the mock upstream and the proxies in front of it (stopped with `stack`); notes in `data` how
    long each took to start and why LiteLLM is missing, if it is."""
    upstream = stack.enter_context(mock_upstream(delay_ms))
    targets = [
        Target(
            "direct",
            upstream,
            "/v1/chat/completions",
            {},
            {"model": "mock", "messages": PROMPT, "max_tokens": 64},
        )
    ]
    keel_url, keel_key, keel_process, keel_ready = stack.enter_context(
        keel(keel_toml(upstream), workdir, "keel")
    )
    targets.append(_keel_target("keel", keel_url, keel_key, keel_process.pid))
    data["keel_ready_s"] = keel_ready
    targets.append(prompt_target(targets[1]))
    # The same Keel with its guards off, where it has them: what the gateway itself costs.
    guards_off = None if prompt_only else guards_off_toml()
    data["keel_guards_off_config"] = guards_off
    if guards_off is not None:
        bare_url, bare_key, bare_process, _ = stack.enter_context(
            keel(keel_toml(upstream, extra=guards_off), workdir, "keel-guards-off")
        )
        targets.append(_keel_target("keel_guards_off", bare_url, bare_key, bare_process.pid))
    litellm_binary = None if prompt_only else find_litellm(litellm)
    litellm_problem: str | None = None
    if prompt_only:
        litellm_problem = "not run (`--prompt-only`)"
    elif litellm_binary is None:
        litellm_problem = (
            "no `litellm` executable found (see the module docstring for where it is looked for)"
        )
    else:
        try:
            litellm_port, litellm_process, litellm_ready = stack.enter_context(
                litellm_proxy(litellm_binary, upstream, workdir)
            )
            targets.append(
                Target(
                    "litellm",
                    litellm_port,
                    "/v1/chat/completions",
                    {"authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                    {"model": MODEL_ALIAS, "messages": PROMPT, "max_tokens": 64},
                    litellm_process.pid,
                )
            )
            data["litellm_ready_s"] = litellm_ready
            data["litellm_version"] = litellm_version(litellm_binary)
        except RuntimeError as exc:
            litellm_problem = f"LiteLLM did not start: {exc}"
    data["litellm_problem"] = litellm_problem
    return targets


def check(target: Target) -> None:
    reply = httpx.post(
        f"http://127.0.0.1:{target.port}{target.path}", json=target.body, headers=target.headers, timeout=60
    )
    if reply.status_code != 200:
        raise RuntimeError(f"{target.name}: {reply.status_code} {reply.text[:500]}")


def prompt_target(keel_target: Target) -> Target:
    """The same Keel and the same messages, rendered from a registry prompt: the request names the prompt
    (a label, and the question as a variable) instead of sending the messages."""
    version = {
        "name": "bench-support",
        "label": "bench",
        "messages": [PROMPT[0], {"role": "user", "content": "{{ question }}"}],
        "variables": {
            "type": "object",
            "required": ["question"],
            "properties": {"question": {"type": "string"}},
        },
    }
    pushed = httpx.post(
        f"http://127.0.0.1:{keel_target.port}/v1/prompts",
        json=version,
        headers=keel_target.headers,
        timeout=60,
    )
    pushed.raise_for_status()
    reference = {"name": "bench-support", "label": "bench", "variables": {"question": PROMPT[1]["content"]}}
    body = {"model": MODEL_ALIAS, "prompt": reference, "max_tokens": 64, "cache": False}
    return Target(
        "keel_prompt", keel_target.port, keel_target.path, keel_target.headers, body, keel_target.pid
    )


def _keel_target(name: str, url: str, key: str, pid: int) -> Target:
    """A `keel serve` path: chat completions past the cache, so every request reaches the upstream."""
    return Target(
        name,
        int(url.rsplit(":", 1)[1]),
        "/v1/chat/completions",
        {"authorization": f"Bearer {key}"},
        {"model": MODEL_ALIAS, "messages": PROMPT, "max_tokens": 64, "cache": False},
        pid,
    )
