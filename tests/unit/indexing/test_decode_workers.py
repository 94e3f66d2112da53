"""The default number of decode threads: one per CPU this process may use, at least 2."""

from __future__ import annotations

import os

from clipsearch.indexing import pipeline


def test_one_decode_thread_per_usable_cpu_and_at_least_two() -> None:
    assert [pipeline.default_decode_workers(n) for n in (1, 2, 3, 16, 64)] == [2, 2, 3, 16, 64]


def test_the_cpu_count_is_the_affinity_not_the_host(monkeypatch) -> None:
    """A container or taskset share: 3 usable CPUs of a 192-CPU host give 3 threads, not 192."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6})
    monkeypatch.setattr(os, "cpu_count", lambda: 192)
    assert pipeline.usable_cpus() == 3 and pipeline.default_decode_workers() == 3
