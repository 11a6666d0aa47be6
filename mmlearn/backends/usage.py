"""Tokens and money an endpoint evaluation used, and the stop before it would spend more than
`backend.max_cost_usd`. Totals cover every answer the evaluation read (answers from the cache were paid
by an earlier run: `usage/cost_usd_sent` is what this run paid). A request's cost is estimated from its
prompt size before it is sent (characters / 4 + a fixed count per image, and the full `max_tokens`);
the totals use the token counts the endpoint reports (the estimate where it reports none)."""

from __future__ import annotations


class BudgetExceeded(RuntimeError):
    """Sending the next request could take the evaluation over backend.max_cost_usd."""


class Usage:
    def __init__(self, prices: dict | None, max_cost_usd: float | None) -> None:
        self.prices = prices
        self.max_cost_usd = max_cost_usd
        self.tokens = {"input": 0, "output": 0}
        self.cost = 0.0
        self.cost_sent = 0.0
        self.sent = 0
        self.cached = 0
        self.estimated = 0  # answers without token counts: counted by their estimate

    def price(self, input_tokens: int, output_tokens: int) -> float:
        if not self.prices:
            return 0.0
        return (input_tokens * self.prices["input"] + output_tokens * self.prices["output"]) / 1e6

    def _tokens(self, answer: dict, estimate: tuple[int, int]) -> tuple[int, int]:
        usage = answer.get("usage") or {}
        if "prompt_tokens" not in usage or "completion_tokens" not in usage:
            self.estimated += 1
            return estimate
        return int(usage["prompt_tokens"]), int(usage["completion_tokens"])

    def _add(self, answer: dict, estimate: tuple[int, int]) -> float:
        input_tokens, output_tokens = self._tokens(answer, estimate)
        self.tokens["input"] += input_tokens
        self.tokens["output"] += output_tokens
        cost = self.price(input_tokens, output_tokens)
        self.cost += cost
        return cost

    def add_sent(self, answer: dict, estimate: tuple[int, int]) -> None:
        self.sent += 1
        self.cost_sent += self._add(answer, estimate)

    def add_cached(self, answer: dict) -> None:
        self.cached += 1
        self._add(answer, tuple(answer.get("estimate", (0, 0))))

    def affordable(self, requests: list) -> tuple[list, BudgetExceeded | None]:
        """The requests that fit in what is left of the budget, in order, and the stop for the first
        that does not (None when all fit)."""
        if self.max_cost_usd is None:
            return requests, None
        committed = self.cost
        for n, request in enumerate(requests):
            estimate = self.price(*request.estimate)
            if committed + estimate > self.max_cost_usd:
                return requests[:n], BudgetExceeded(
                    f"backend.max_cost_usd={self.max_cost_usd} would be exceeded: ${committed:.4f} spent or "
                    f"committed on {self.sent + self.cached + n} answers ({self.cached} from the cache), and "
                    f"sample {request.sample_id} is estimated at ${estimate:.4f}. The answers so far are "
                    "cached: raise backend.max_cost_usd and run again to continue without paying for them twice"
                )
            committed += estimate
        return requests, None

    def metrics(self) -> dict[str, float]:
        metrics = {
            "usage/input_tokens": float(self.tokens["input"]),
            "usage/output_tokens": float(self.tokens["output"]),
            "usage/requests_sent": float(self.sent),
            "usage/cached_answers": float(self.cached),
            "usage/estimated_answers": float(self.estimated),
        }
        if self.prices:
            metrics |= {"usage/cost_usd": self.cost, "usage/cost_usd_sent": self.cost_sent}
        return metrics
