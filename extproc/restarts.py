"""When a dead ext_proc worker is started again, and when the supervisor gives up (sans-IO).

A worker that dies (a crash, the OOM killer, a `kill -9`) is restarted: Envoy's health checks and
outlier detection route around it meanwhile, so only its in-flight requests fail. Restarts back off
(the first is at once, each further one within the window waits twice as long), and a crash loop —
`max_deaths` deaths within `window_s` — stops the gateway, because restarting would only hide a
worker that cannot run (a broken install, a config it cannot load).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    max_deaths: int = 5
    window_s: float = 60.0
    first_delay_s: float = 0.05
    max_delay_s: float = 5.0
    restarts: int = 0  # restarts granted so far (for logs)
    _deaths: deque[float] = field(default_factory=deque)

    def on_death(self, now: float) -> float | None:
        """Record a worker's death at `now` (monotonic seconds): the delay before restarting it,
        or None for a crash loop (stop the gateway)."""
        self._deaths.append(now)
        while self._deaths and self._deaths[0] <= now - self.window_s:
            self._deaths.popleft()
        recent = len(self._deaths)
        if recent >= self.max_deaths:
            return None
        self.restarts += 1
        return min(self.max_delay_s, self.first_delay_s * 2 ** (recent - 1))

    def describe_loop(self) -> str:
        return f"{self.max_deaths} worker deaths within {self.window_s:g}s"
