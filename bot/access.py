"""Who may look at the dashboard: the Host allow-list, throttling of wrong credentials,
and browser sessions. Pure state with an injectable clock; bot.web applies it to requests.

- **Hosts.** A browser sends the name it asked for in ``Host``; a page elsewhere that
  rebinds its own name to 127.0.0.1 sends that foreign name. Only loopback's names, the
  bound address and ``THUMBTUNE_DASHBOARD_ALLOWED_HOSTS`` are answered (421 otherwise).
  A listener on every address (``0.0.0.0``, ``::``) needs a token anyway and, unless the
  setting names hosts, answers any name.
- **Throttling.** Wrong bearer tokens and wrong sign-ins count against the client's
  address; after :data:`FAILURES_ALLOWED` in :data:`FAILURE_WINDOW_S` it is refused (429,
  ``Retry-After``) until the oldest failure leaves the window.
- **Sessions.** A sign-in gets a random session id (never derived from the token) that
  expires after :data:`SESSION_S` and ends at sign-out; sessions live in the process, so
  a restart (or a new token, which needs one) signs everyone out.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
FAILURES_ALLOWED = 5
FAILURE_WINDOW_S = 60.0
SESSION_S = 12 * 3600.0
MAX_TRACKED = 10_000  # clients (or sessions) remembered at most; the oldest are dropped first

Clock = Callable[[], float]


def host_name(header: str) -> str:
    """The name in a ``Host`` header, lower case, without the port or IPv6 brackets."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class HostAllowList:
    def __init__(self, *, bound: str, allowed: Iterable[str]) -> None:
        names = {host_name(name) for name in allowed}
        self.any = "*" in names or (not names and bound in WILDCARDS)
        self.names = frozenset(names | set(LOOPBACK_NAMES) | ({host_name(bound)} - WILDCARDS))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:  # HTTP/1.0 without Host: not a browser on a rebound name
            return True
        name = host_name(header)
        if name in self.names:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback  # 127.0.0.2 ... is this machine too
        except ValueError:
            return False


class FailureThrottle:
    def __init__(
        self, *, allowed: int = FAILURES_ALLOWED, window_s: float = FAILURE_WINDOW_S, clock: Clock = time.monotonic
    ) -> None:
        self.allowed, self.window_s, self.clock = allowed, window_s, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        times = self._recent(client)
        if len(times) < self.allowed:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - self.clock()))

    def failed(self, client: str) -> None:
        times = self._recent(client)
        times.append(self.clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.get(client, deque())
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
        return times


class Sessions:
    def __init__(self, *, lifetime_s: float = SESSION_S, clock: Clock = time.time) -> None:
        self.lifetime_s, self.clock = lifetime_s, clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def start(self) -> str:
        session = secrets.token_urlsafe(32)
        self._expiry[session] = self.clock() + self.lifetime_s
        while len(self._expiry) > MAX_TRACKED:
            self._expiry.popitem(last=False)
        return session

    def valid(self, session: str) -> bool:
        expiry = self._expiry.get(session)
        if expiry is None:
            return False
        if expiry <= self.clock():
            del self._expiry[session]
            return False
        return True

    def end(self, session: str) -> None:
        self._expiry.pop(session, None)
