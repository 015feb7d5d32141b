"""What every part of the gateway bench shares: the alias, the prompt, the targets, where LiteLLM lives."""

from __future__ import annotations

from pathlib import Path

MODEL_ALIAS = "bench"
BANKING77 = Path("../shared/data/intents/banking77_train.csv")
# Customer messages the injection guard may refuse (its measured false-positive rate on banking77 is 0.2 %).
MAX_REFUSED_SHARE = 0.02
# Where `make bench` installs LiteLLM's proxy, apart from Keel's own dependencies.
LITELLM_VENV = Path(__file__).resolve().parents[2] / ".bench-venv" / "litellm"
# The targets of issue #18: added p50 as a share of LiteLLM's, the exact-hit p50, the throughput ratio.
TARGET_DEFAULT_SHARE, TARGET_GUARDS_OFF_SHARE = 0.3, 0.2
TARGET_HIT_MS, TARGET_THROUGHPUT_RATIO = 1.0, 2.0
LITELLM_MASTER_KEY = "sk-bench-master"
PROMPT = [
    {"role": "system", "content": "You are a helpful support assistant for an e-bike shop."},
    {"role": "user", "content": "How long does a full charge of the battery take?"},
]
