"""Where the gateway's own time goes: a cProfile of chat completions through the whole app (middleware,
auth, the wrapper stack, the OpenAI-compatible provider) against the mock upstream, in one process and
one thread, so the profile sees every step of the hot path.

    .venv/bin/python -m bench.gateway_profile [--requests 2000] [--guards-off]

Writes bench/results/gateway_profile[_guards_off].txt: the top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import httpx

from bench.gateway_overhead import MODEL_ALIAS, PROMPT, guards_off_toml, keel_toml, mock_upstream
from bench.harness import RESULTS


async def _drive(requests: int, profile: cProfile.Profile) -> tuple[float, int]:
    from keel.cli_common import command_settings
    from keel.keys import Role
    from keel.server.app import create_app

    app = create_app(command_settings())  # logs at warning, as `keel serve` does under the bench
    async with app.router.lifespan_context(app):
        key = app.state.runtime.keys.create("bench", Role.APP).secret
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": MODEL_ALIAS, "messages": PROMPT, "cache": False}
        async with httpx.AsyncClient(transport=transport, base_url="http://keel", headers=headers) as client:
            # The models load and the classifiers fit on a background thread after start; a profile taken
            # meanwhile charges the request thread with waits for the GIL that the server never pays later.
            while not app.state.runtime.warmed_up:
                await asyncio.sleep(0.2)
            for _ in range(50):  # warm-up: first-use loading stays out of the profile
                (await client.post("/v1/chat/completions", json=body)).raise_for_status()
            started = time.perf_counter()
            profile.enable()
            for _ in range(requests):
                (await client.post("/v1/chat/completions", json=body)).raise_for_status()
            profile.disable()
            return time.perf_counter() - started, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--guards-off", action="store_true")
    args = parser.parse_args()
    with mock_upstream(0) as port, tempfile.TemporaryDirectory() as data_dir:
        config = Path(data_dir) / "keel.toml"
        config.write_text(keel_toml(port, extra=(guards_off_toml() or "") if args.guards_off else ""))
        os.environ.update(
            {"KEEL_DATA_DIR": data_dir, "KEEL_CONFIG_FILE": str(config), "KEEL_LOG_LEVEL": "warning"}
        )
        profile = cProfile.Profile()
        seconds, requests = asyncio.run(_drive(args.requests, profile))
    out = io.StringIO()
    load = os.getloadavg()[0]
    out.write(
        f"{requests} chat completions in-process (ASGI, no socket to Keel; the mock upstream over HTTP), "
        f"{'guards off' if args.guards_off else 'default config'}: {seconds / requests * 1000:.2f} ms each "
        f"under the profiler (1-min load average {load:.2f}).\n\n"
    )
    for order in ("cumulative", "tottime"):
        out.write(f"## by {order}\n\n")
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(45)
    name = "gateway_profile_guards_off" if args.guards_off else "gateway_profile"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.txt").write_text(out.getvalue())
    print(out.getvalue()[:6000])


if __name__ == "__main__":
    main()
