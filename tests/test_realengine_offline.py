"""The real-engine tools without an engine: trace prompts, the replayer's failure records, the replay CLI's bad input,
and the simulator's vLLM rules (block-granular hits, blocks cached at scheduling) on hand-made routed streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from subprocess import CompletedProcess

import pytest

from envs.prefix.workloads import TraceRow
from warmroute.realengine.engines import free_port
from warmroute.realengine.fidelity import FidelitySetup, simulated_cached_tokens
from warmroute.realengine.prompts import ScaleConfig, ScaledRequest, scale_window
from warmroute.realengine.replay import RequestRecord, replay, summarize

SCALE = ScaleConfig()


def _rows() -> tuple[TraceRow, ...]:
    return (
        TraceRow(0.0, 1300, 320, (7, 8, 9)),  # 2 full blocks + 276 tokens
        TraceRow(1000.0, 1100, 16, (7, 8, 11)),  # shares blocks 7, 8
        TraceRow(1500.0, 20 * 512, 5000, tuple(range(100, 120))),  # longer than max_blocks
    )


def test_shared_hash_ids_become_shared_tokens_and_lengths_shrink_by_the_block() -> None:
    a, b, c = scale_window(_rows(), 0, 3, SCALE, time_scale=0.5)
    assert a.prompt[:64] == b.prompt[:64] and a.prompt[64:] != b.prompt[64:70]
    assert len(a.prompt) == 2 * 32 + -(-276 // 16) and len(b.prompt) == 2 * 32 + -(-76 // 16)
    assert len(c.prompt) == SCALE.max_blocks * 32 and c.block_ids == tuple(range(100, 100 + SCALE.max_blocks))
    assert (a.output_tokens, b.output_tokens, c.output_tokens) == (8, 1, 8)
    assert (a.arrival_s, b.arrival_s, c.arrival_s) == (0.0, 0.5, 0.75)
    assert scale_window(_rows(), 0, 1, SCALE)[0].prompt == a.prompt  # deterministic
    assert all(3 <= t < SCALE.vocab_size for t in c.prompt)


def test_a_refused_connection_is_recorded_as_a_failure_at_once() -> None:
    spec = scale_window(_rows(), 0, 1, SCALE)[0]
    [record] = asyncio.run(replay([spec], [f"http://127.0.0.1:{free_port()}"], model="m", timeout_s=5))
    assert record.status == 0 and "Connect" in record.error and record.e2e_s < 5
    assert summarize([record])["failed"] == 1


def test_replay_refuses_a_url_without_a_scheme_in_one_line(cli_in_process: Callable[..., CompletedProcess]) -> None:
    result = cli_in_process("replay", "--url", "127.0.0.1:8000")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--url 127.0.0.1:8000: not an http(s) URL" in result.stderr


def _record(spec: ScaledRequest, sent_s: float, backend: int = 0) -> RequestRecord:
    return RequestRecord(spec.index, spec.arrival_s, sent_s, "", len(spec.prompt), spec.output_tokens, 200, backend=str(backend))


def _stream(*blocks: tuple[int, ...]) -> list[ScaledRequest]:
    """Requests of whole 32-token blocks (the prompt's tokens do not matter to the simulator)."""
    return [ScaledRequest(i, 0.0, (5,) * (32 * len(b)), 4, b) for i, b in enumerate(blocks)]


@pytest.mark.parametrize(("block_hits", "expected"), [(True, 64), (False, 95)])
def test_a_repeated_prompt_hits_all_but_its_last_block_under_vllm_rules_and_all_but_a_token_by_default(
    block_hits: bool, expected: int
) -> None:
    requests = _stream((1, 2, 3), (1, 2, 3))
    records = [_record(requests[0], 0.0), _record(requests[1], 5.0)]  # the first has long finished
    setup = FidelitySetup(engine_blocks=64, block_hits=block_hits, cache_on_schedule=False)
    assert simulated_cached_tokens(requests, records, SCALE, setup) == [0, expected]


@pytest.mark.parametrize(("on_schedule", "expected"), [(True, 64), (False, 0)])
def test_a_request_admitted_with_another_reuses_its_blocks_only_when_blocks_are_cached_at_scheduling(
    on_schedule: bool, expected: int
) -> None:
    requests = _stream((1, 2, 3), (1, 2, 4))
    records = [_record(requests[0], 0.0), _record(requests[1], 0.0)]  # same instant, same replica: one batch
    setup = FidelitySetup(engine_blocks=64, cache_on_schedule=on_schedule)
    assert simulated_cached_tokens(requests, records, SCALE, setup) == [0, expected]


def test_requests_on_different_replicas_share_nothing() -> None:
    requests = _stream((1, 2, 3), (1, 2, 3))
    records = [_record(requests[0], 0.0, backend=0), _record(requests[1], 5.0, backend=1)]
    assert simulated_cached_tokens(requests, records, SCALE, FidelitySetup(engine_blocks=64)) == [0, 0]
