"""Prefix-sharing request streams: Mooncake-format trace replay, SGLang's shared-prefix benchmark, multi-turn chats.

Every request carries ``block_ids``: one id per ``BLOCK_TOKENS``-token block of its prompt, as in the Mooncake
trace's ``hash_ids``; two requests whose lists share a leading run of ids share that prefix (the last block may be
partial). ``finish_block_ids`` are the blocks a replica can keep once the request is done: the prompt's, plus the
answer's full blocks for a multi-turn chat (whose next prompt starts with it). The prefix cache
(``envs.prefix.cache``) works at this granularity.

Streams are plain data (no vidur), deterministic under the seed; ``envs.prefix.sim`` turns them into vidur requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from envs.errors import WarmRouteError

BLOCK_TOKENS = 512
"""Tokens per prefix block: the Mooncake trace's hash granularity, used by the generators too."""
MOONCAKE_TRACE = Path(__file__).parent / "data" / "mooncake_conversation_trace.jsonl"
"""The bundled Mooncake conversation trace (Apache-2.0, see envs/prefix/data/README.md)."""
TRACE_SESSION_BLOCKS = 2
"""A trace request's session is its first two block ids: the first is a system prompt every Kimi request shares;
93 % of the trace's reusable prefix tokens come from an earlier request with the same first two ids (measured)."""
_GENERATED_ID_BASE = 1 << 40  # generated block ids stay clear of trace ids (the bundled trace's largest is 182789)


class TraceFormatError(WarmRouteError):
    """A trace file that cannot be replayed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class PrefixRequest:
    """One request of a prefix-sharing stream."""

    arrival_s: float
    """Arrival time, simulated seconds (for a follow-up turn: think time after the previous turn completes)."""
    prompt_tokens: int
    output_tokens: int
    block_ids: tuple[int, ...]
    """One id per ``BLOCK_TOKENS`` prompt tokens (last block may be partial)."""
    finish_block_ids: tuple[int, ...]
    """Blocks cacheable after completion (prompt blocks, plus full answer blocks in a chat)."""
    session: int
    """Chat session or shared-prefix group (for sticky routing); trace requests use their first blocks' ids."""
    next_turn: int = -1
    """Index (in the stream) of the turn that follows this one's completion, or -1."""


@dataclass(frozen=True)
class TraceRow:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@lru_cache(maxsize=4)
def load_trace(path: str) -> tuple[TraceRow, ...]:
    """Parse a Mooncake-format JSON-lines trace, refusing a malformed line with its file and line number."""
    rows: list[TraceRow] = []
    try:
        handle = open(path)
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot open trace ({exc.strerror}); give a Mooncake-format .jsonl file") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                parsed = TraceRow(
                    float(row["timestamp"]),
                    int(row["input_length"]),
                    int(row["output_length"]),
                    tuple(int(h) for h in row["hash_ids"]),
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise TraceFormatError(
                    f"{path}:{number}: not a trace record ({type(exc).__name__}); each line must be a JSON object "
                    "with timestamp, input_length, output_length, hash_ids"
                ) from exc
            if parsed.input_length < 1 or parsed.output_length < 1:
                raise TraceFormatError(f"{path}:{number}: input_length and output_length must be >= 1")
            if len(parsed.hash_ids) * BLOCK_TOKENS < parsed.input_length:
                raise TraceFormatError(
                    f"{path}:{number}: {len(parsed.hash_ids)} hash_ids cover {len(parsed.hash_ids) * BLOCK_TOKENS} "
                    f"tokens but input_length is {parsed.input_length}; need one id per {BLOCK_TOKENS} prompt tokens"
                )
            rows.append(parsed)
    if not rows:
        raise TraceFormatError(f"{path}: the trace is empty")
    return tuple(rows)


def trace_file(prefix_workload: str) -> str:
    """Path of the trace a ``mooncake`` or ``jsonl:PATH`` prefix workload replays."""
    return str(MOONCAKE_TRACE) if prefix_workload == "mooncake" else prefix_workload.split(":", 1)[1]


def block_tokens(prompt_tokens: int, index: int) -> int:
    """Tokens of prompt block ``index`` (the last block may be partial)."""
    return max(0, min(BLOCK_TOKENS, prompt_tokens - index * BLOCK_TOKENS))


def prefix_tokens(prompt_tokens: int, num_blocks: int) -> int:
    """Tokens of the first ``num_blocks`` prompt blocks."""
    return min(num_blocks * BLOCK_TOKENS, prompt_tokens)


def trace_requests(rows: tuple[TraceRow, ...], start: int, count: int, time_scale: float) -> list[PrefixRequest]:
    """Rows ``start .. start+count`` with arrivals relative to row ``start``, times multiplied by ``time_scale``."""
    origin = rows[start].timestamp_ms if start < len(rows) else 0.0
    out = []
    for row in rows[start : start + count]:
        blocks = row.hash_ids[: -(-row.input_length // BLOCK_TOKENS)]
        out.append(
            PrefixRequest(
                arrival_s=(row.timestamp_ms - origin) / 1000.0 * time_scale,
                prompt_tokens=row.input_length,
                output_tokens=row.output_length,
                block_ids=blocks,
                finish_block_ids=blocks,
                session=hash(blocks[:TRACE_SESSION_BLOCKS]) & 0xFFFFFFFF,  # int tuples hash the same in every process
            )
        )
    return out


def unbounded_hit_rate(requests: list[PrefixRequest], warm: list[PrefixRequest] = ()) -> float:
    """Token-weighted prefix hit rate of ``requests`` with one infinite cache that has already seen ``warm``.

    No router can beat it: a replica's cache holds a subset of what one infinite cache would.
    """
    seen = {block for spec in warm for block in spec.finish_block_ids}
    hit = total = 0
    for spec in requests:
        tokens = 0
        for j, block in enumerate(spec.block_ids):
            if block not in seen:
                break
            tokens += block_tokens(spec.prompt_tokens, j)
        hit += min(tokens, spec.prompt_tokens - 1)  # the simulator recomputes at least one token, as vLLM does
        total += spec.prompt_tokens
        seen.update(spec.finish_block_ids)
    return hit / total if total else 0.0


def _poisson_arrivals(rng: np.random.Generator, rate: float, count: int) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate, size=count)) if count else np.zeros(0)


def _popularity(num: int, zipf_theta: float) -> np.ndarray:
    """Uniform (theta 0) or Zipf(theta) probabilities over ``num`` items, most popular first."""
    weights = 1.0 / np.arange(1, num + 1) ** zipf_theta
    return weights / weights.sum()


def shared_prefix_requests(
    *,
    seed: int,
    num_requests: int,
    qps: float,
    groups: int,
    prefix_tokens: int,
    question_tokens: int,
    output_tokens: int,
    zipf_theta: float,
) -> list[PrefixRequest]:
    """SGLang bench_serving's "generated shared prefix" stream with Poisson arrivals.

    Each request picks a group (uniform, or Zipf(theta) popularity), whose ``prefix_tokens``-token system prompt it
    shares, then adds its own ``question_tokens`` question. Blocks wholly inside the system prompt carry the group's
    ids; the block where the question starts and all later ones are the request's own.
    """
    rng = np.random.default_rng([seed, 1])
    arrivals = _poisson_arrivals(rng, qps, num_requests)
    chosen = rng.choice(groups, size=num_requests, p=_popularity(groups, zipf_theta))
    prompt = prefix_tokens + question_tokens
    num_blocks = -(-prompt // BLOCK_TOKENS)
    shared = prefix_tokens // BLOCK_TOKENS
    out = []
    for k in range(num_requests):
        group = int(chosen[k])
        own = _GENERATED_ID_BASE * 2 + k * num_blocks
        blocks = tuple(_GENERATED_ID_BASE + group * num_blocks + j if j < shared else own + j for j in range(num_blocks))
        out.append(PrefixRequest(float(arrivals[k]), prompt, output_tokens, blocks, blocks, group))
    return out


def multi_turn_requests(
    *, seed: int, num_requests: int, qps: float, sessions: int, message_tokens: int, output_tokens: int, think_time_s: float
) -> list[PrefixRequest]:
    """Chats whose turn k prompt is the whole conversation so far (earlier messages and answers) plus a new message.

    ``num_requests`` turns are dealt to ``sessions`` chats (the first ``num_requests % sessions`` get one more).
    Sessions start as a Poisson process at ``qps / turns_per_session`` so that turns arrive at about ``qps``;
    turn k+1 arrives an exponential think time (mean ``think_time_s``) after turn k completes, so its
    ``arrival_s`` holds only that think time. A block id names (session, block index): a block is shared by every
    later turn once the conversation has filled it.
    """
    rng = np.random.default_rng([seed, 2])
    base, extra = divmod(num_requests, sessions)
    turns = [base + (s < extra) for s in range(sessions)]
    starts = _poisson_arrivals(rng, qps * sessions / num_requests, sessions)
    stride = 1 << 20  # block ids per session
    out: list[PrefixRequest] = []
    for s, num_turns in enumerate(turns):
        context = 0
        for t in range(num_turns):
            prompt = context + message_tokens
            full = prompt // BLOCK_TOKENS
            blocks = tuple(_GENERATED_ID_BASE * 3 + s * stride + j for j in range(full))
            if prompt % BLOCK_TOKENS:  # the partial last block changes with the next message: its own id
                blocks += (_GENERATED_ID_BASE * 4 + len(out),)
            finish_full = (prompt + output_tokens) // BLOCK_TOKENS
            finish = tuple(_GENERATED_ID_BASE * 3 + s * stride + j for j in range(finish_full))
            arrival = float(starts[s]) if t == 0 else float(rng.exponential(think_time_s)) if think_time_s > 0 else 0.0
            nxt = len(out) + 1 if t + 1 < num_turns else -1
            out.append(PrefixRequest(arrival, prompt, output_tokens, blocks, finish, s, nxt))
            context = prompt + output_tokens
    return out
