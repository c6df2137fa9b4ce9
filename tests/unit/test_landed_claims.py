"""When a 'processing' claim on a landed object is stale (pure decision, no store, no Prefect)."""

from __future__ import annotations

import pytest

from tagtree.io.store.landed import RUN_NOT_FOUND, stale_claim_reason

LEASE = 3600.0


@pytest.mark.parametrize("state", ["CRASHED", "FAILED", "CANCELLED", "Crashed"])
def test_a_run_that_ended_without_completing_leaves_a_stale_claim(state):
    assert stale_claim_reason(state, 5.0, LEASE) == f"its flow run is {state.upper()}"


def test_a_run_prefect_does_not_know_leaves_a_stale_claim():
    assert "not known to Prefect" in stale_claim_reason(RUN_NOT_FOUND, 5.0, LEASE)


@pytest.mark.parametrize("state", ["RUNNING", "PENDING", "SCHEDULED", "CANCELLING", "PAUSED",
                                   "COMPLETED", None])
def test_a_live_or_unknown_run_keeps_its_claim_within_the_lease(state):
    assert stale_claim_reason(state, LEASE - 1, LEASE) is None


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETED", None])
def test_any_claim_past_the_lease_is_stale(state):
    assert stale_claim_reason(state, LEASE + 1, LEASE) == (
        "claimed 3601 s ago, past the 3600 s lease")


def test_a_row_without_a_recorded_claim_is_stale():
    assert stale_claim_reason("RUNNING", None, LEASE) == "no claim recorded"
