"""Mobile-class benchmark profiles: the runtime and kernels phones use (LiteRT with XNNPACK), run on this host.

A profile fixes the runtime, the thread count and how many CPU cores the measuring process may use
(``os.sched_setaffinity``, restored afterwards). Results are host measurements: this CPU's caches,
clock and vector units (AVX-512, AMX) are not a phone's, so absolute times do not transfer to a device;
ratios between models on the same kernels transfer better.

Example:
    >>> sorted(PROFILES)
    ['mobile-1t', 'mobile-4t']
    >>> p = get_profile("mobile-1t")
    >>> p.runtimes, p.threads, p.cores
    (('litert',), (1,), 1)
    >>> import os
    >>> before = os.sched_getaffinity(0)
    >>> with pinned(1) as cores:
    ...     len(os.sched_getaffinity(0)) == len(cores) == 1
    True
    >>> os.sched_getaffinity(0) == before
    True
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from edgecnn.errors import EdgecnnError

HOST_LABEL = "host measurement (not a phone)"


@dataclass(frozen=True)
class Profile:
    """A named benchmark set-up."""

    name: str
    runtimes: tuple[str, ...]
    threads: tuple[int, ...]
    cores: int  # CPU cores the measuring process is pinned to
    description: str

    def as_dict(self) -> dict:
        return {"name": self.name, "runtimes": list(self.runtimes), "threads": list(self.threads),
                "cores": self.cores, "description": self.description, "label": HOST_LABEL}


PROFILES: dict[str, Profile] = {
    "mobile-1t": Profile("mobile-1t", ("litert",), (1,), 1,
                         "LiteRT + XNNPACK, 1 thread, pinned to one core: a phone's single big core"),
    "mobile-4t": Profile("mobile-4t", ("litert",), (4,), 4,
                         "LiteRT + XNNPACK, 4 threads on up to 4 cores: a phone's big cluster"),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        EdgecnnError: no such profile.
    """
    if name not in PROFILES:
        raise EdgecnnError(f"unknown profile {name!r}: Expected one of {', '.join(PROFILES)}. Received: {name!r}")
    return PROFILES[name]


@contextlib.contextmanager
def pinned(cores: int | None) -> Iterator[tuple[int, ...]]:
    """Pin this process to its first ``cores`` allowed CPUs for the block; restore the old set afterwards.

    Yields the CPUs pinned to (all allowed CPUs when ``cores`` is None or pinning is not supported).
    Threads created inside the block (LiteRT's XNNPACK pool) inherit the set.
    """
    if cores is None or not hasattr(os, "sched_setaffinity"):
        allowed = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
        yield allowed
        return
    before = os.sched_getaffinity(0)
    chosen = tuple(sorted(before)[: max(1, cores)])
    os.sched_setaffinity(0, chosen)
    try:
        yield chosen
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def profile_threads(profile: str) -> Iterator[int]:
    """Run the block as runtime profile ``profile`` says: yields its thread count; ``mobile-1t`` pins the
    process to one core. No profile (``""``): one thread, no pinning.

    >>> with profile_threads("") as threads:
    ...     threads
    1
    """
    if not profile:
        yield 1
        return
    spec = get_profile(profile)
    with pinned(spec.cores):
        yield int(spec.threads[0])
