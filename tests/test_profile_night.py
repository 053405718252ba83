"""scripts/profile_night.py's arithmetic: the cores' busy share of a period, from /proc/stat."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from profile_night import CpuSampler, busy_seconds, cpu_counters


def test_cpu_counters_count_idle_and_iowait_as_not_busy_and_guest_time_once():
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is part of user)
    assert cpu_counters("cpu  100 5 20 300 40 1 2 3 50 7\ncpu0 1 2 3 4\n") == (131, 471)


def test_busy_share_reads_the_samples_that_bracket_the_period():
    sampler = CpuSampler()
    sampler.samples = [(1000, 100, 1000), (1500, 150, 1100), (2000, 250, 1200), (2500, 260, 1300)]
    assert sampler.busy_share(1500, 2000) == pytest.approx(1.0)
    assert sampler.busy_share(1600, 2400) == pytest.approx(110 / 200)  # widened to 1500..2500
    assert sampler.busy_share(500, 2000) is None  # no sample before the period began
    assert sampler.busy_share(1000, 3000) is None  # none after it ended


def test_sampler_without_proc_stat_samples_nothing(tmp_path: Path):
    with CpuSampler(stat=tmp_path / "absent") as sampler:
        pass
    assert sampler.samples == [] and sampler.busy_share(0, 1) is None


def test_sampler_reads_this_machine_when_it_has_proc_stat():
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat here (not Linux)")
    with CpuSampler(every=0.01) as sampler:
        time.sleep(0.05)
    assert len(sampler.samples) >= 2  # the first at the start, the last at the stop
    share = sampler.busy_share(sampler.samples[0][0], sampler.samples[-1][0])
    assert share is not None and 0.0 <= share <= 1.0


def test_busy_seconds_merge_overlapping_jobs():
    assert busy_seconds([(0, 1000), (500, 1500), (3000, 3500)]) == pytest.approx(2.0)
