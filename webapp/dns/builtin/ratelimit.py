"""The builtin DNS server's answer to floods: a token bucket per source address."""
from __future__ import annotations

import socket


class RateLimiter:
    """Token bucket per source address (IPv6: per /64); memory bounded by `max_entries`."""

    ALLOW, SLIP, DROP = 0, 1, 2

    def __init__(self, rate: float, burst: int, slip: int = 2, max_entries: int = 100_000):
        self.rate, self.burst, self.slip = float(rate), float(max(burst, 1)), slip
        self.max_entries = max_entries
        self.buckets: dict[str, list] = {}  # key -> [tokens, last seen, excess count]

    def check(self, address: str, now: float) -> int:
        """ALLOW, SLIP (answer with TC) or DROP one query from `address`."""
        if ":" in address:
            address = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])[:8].hex()
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) >= self.max_entries:
                self._sweep(now)
            self.buckets[address] = [self.burst - 1, now, 0]
            return self.ALLOW
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return self.ALLOW
        bucket[0] = tokens
        bucket[2] += 1
        return self.SLIP if self.slip and bucket[2] % self.slip == 0 else self.DROP

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled (they would start full anyway); else everything."""
        idle = self.burst / self.rate
        self.buckets = {k: b for k, b in self.buckets.items() if now - b[1] < idle}
        if len(self.buckets) >= self.max_entries // 2:  # a spoofed flood: start over
            self.buckets = {}
