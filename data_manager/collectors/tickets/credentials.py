"""Credential proof: the pipeline's rule that nothing is listed or removed on credentials a system refused.

Many ticket systems answer a refused, expired or revoked key as the anonymous user: a search
returns nothing, an issue lookup says "not found", and only a who-am-I call answers 401. Acting on
such answers would delete every stored copy. So before the pipeline uses a listing and before it
removes a copy, it calls `prove_credentials(integration)`, which asks the integration's
`verify_credentials()` and raises `CredentialsRefused` (a permanent error) when the system refuses.

A proof is remembered per integration instance for `credential_proof_seconds` (60 by default), so
it costs one request a minute, and is forgotten at once when any `ApiClient` the integration holds
sees a 401. Integrations never call this themselves: a new system cannot forget it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from data_manager.collectors.tickets.errors import CredentialsRefused
from data_manager.collectors.tickets.http import clients_of
from data_manager.collectors.tickets.integration import TicketIntegration

DEFAULT_PROOF_SECONDS = 60.0

__all__ = ["DEFAULT_PROOF_SECONDS", "CredentialsRefused", "forget_credentials", "prove_credentials"]


@dataclass
class _Proof:
    lock: threading.Lock = field(default_factory=threading.Lock)
    valid_until: float = 0.0  # monotonic seconds; 0 = nothing proven
    refusals: int = 0  # 401s seen so far: a proof begun before one is not kept
    listening: set[int] = field(default_factory=set)  # ids of the ApiClients whose 401s forget this proof

    def forget(self) -> None:
        self.refusals += 1
        self.valid_until = 0.0


# One proof per live integration instance; an instance that is garbage collected takes its proof along.
_proofs: weakref.WeakKeyDictionary[TicketIntegration, _Proof] = weakref.WeakKeyDictionary()
_proofs_lock = threading.Lock()


def _proof_for(integration: TicketIntegration) -> _Proof:
    with _proofs_lock:
        proof = _proofs.get(integration)
        if proof is None:
            proof = _proofs[integration] = _Proof()
        return proof


def _listen_for_refusals(integration: TicketIntegration, proof: _Proof) -> None:
    for client in clients_of(integration):  # whose 401s must forget its proof
        if id(client) not in proof.listening:
            proof.listening.add(id(client))
            client.on_unauthorized(proof.forget)


def prove_credentials(
    integration: TicketIntegration, *, fresh: bool = False, clock: Callable[[], float] = time.monotonic
) -> None:
    """Raise `CredentialsRefused` unless the system accepted our credentials within the proof's lifetime.

    `fresh` ignores a remembered proof (one request). Other errors from the check (a timeout, a 5xx)
    propagate as they are: they prove nothing, so the caller retries rather than removes.
    """
    proof = _proof_for(integration)
    max_age = float(integration.credential_proof_seconds)
    with proof.lock:  # concurrent resync threads: one check, the others wait for its answer
        _listen_for_refusals(integration, proof)
        now = clock()
        if not fresh and max_age > 0 and now < proof.valid_until:
            return
        proof.valid_until = 0.0
        refusals = proof.refusals
        integration.verify_credentials()
        if proof.refusals == refusals and max_age > 0:
            proof.valid_until = clock() + max_age


def forget_credentials(integration: TicketIntegration) -> None:
    """Drop a remembered proof (the next `prove_credentials` asks the system again)."""
    _proof_for(integration).forget()
