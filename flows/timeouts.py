"""How long each flow may run before Prefect fails it (`@flow(timeout_seconds=...)`).

Every lmpipe flow has a limit, so a run that hangs (a lost Ray node, a stuck download) ends as `TimedOut`
(a Failed state) and frees its slot: the deployments run under concurrency limits (`prefect.yaml`, the
`lmpipe-cpu` pool of `lmpipe services up`), and a run that never ends would hold the queue behind it for ever.

The defaults fit a real job with room to spare; they are a guard against hangs, not a budget. Override one with
`LMPIPE_TIMEOUT_<FLOW>` in seconds (`LMPIPE_TIMEOUT_PRETRAIN=7200`; `-` in a flow name becomes `_`), or `0`
for no limit. The variable is read when the flow's module is imported, so for a deployment put it in the
deployment's or the pool's `env` job variable (`prefect.yaml` does for `pipeline-sample`).

A subflow keeps its own limit inside a parent's: `pipeline`'s default covers its stages' defaults one after
the other.
"""

from __future__ import annotations

import os

HOUR = 3600.0

DEFAULT_TIMEOUTS_S: dict[str, float] = {
    "curate": 24 * HOUR,  # enwiki / Common Crawl slices stream from the network; a 1 M-document run is ~1 h here
    "curate-units": 24 * HOUR,  # curate's subflow: bounded by curate's own limit anyway
    "tokenize": 12 * HOUR,
    "pretrain": 72 * HOUR,  # tokenize + Ray Train; a GPT-2 small on 4 A10G is about a day
    "glue": 24 * HOUR,  # every task of the spec, with its hyper-parameter search
    "promote": 1 * HOUR,  # registry reads and alias moves only
    "pipeline": 124 * HOUR,  # curate + pretrain + glue + promote at their defaults, one after the other
}


def timeout_variable(flow_name: str) -> str:
    """`LMPIPE_TIMEOUT_<FLOW>`: the environment variable that overrides `flow_name`'s limit."""
    return "LMPIPE_TIMEOUT_" + flow_name.upper().replace("-", "_")


def flow_timeout(flow_name: str) -> float | None:
    """Seconds `flow_name` may run: `$LMPIPE_TIMEOUT_<FLOW>` if set (0 = no limit), else its default.

    Raises ValueError naming the variable when its value is not a number of seconds.
    """
    variable = timeout_variable(flow_name)
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return DEFAULT_TIMEOUTS_S[flow_name]
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number of seconds; set it to e.g. 7200, or 0 for no "
                         f"limit (default {DEFAULT_TIMEOUTS_S[flow_name]:.0f})") from None
    if seconds < 0:
        raise ValueError(f"{variable}={raw!r} is negative; set a number of seconds, or 0 for no limit")
    return seconds or None
