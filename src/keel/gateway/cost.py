"""Turns token usage into money with the deployment's price table (prices per million tokens)."""

from __future__ import annotations

from decimal import Decimal

from keel.config import DeploymentSettings

_MILLION = Decimal(1_000_000)


def cost_of(deployment: DeploymentSettings, prompt_tokens: int, completion_tokens: int) -> Decimal:
    return (deployment.input_price * prompt_tokens + deployment.output_price * completion_tokens) / _MILLION
