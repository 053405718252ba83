"""What retention removes, decided from names and dates alone (stages/clean.py lists and deletes).

Dated outputs (one `run_date=...` folder a night) older than `keep_days` before the run date go,
except the newest of each kind (the indexes a later night extends, the latest recommendations)
and the pinned dates: tonight's, the serving model's, the one `_LATEST` recommendations name.
Models beyond the `keep_models` newest go, except the pinned ones (the serving model, tonight's).
0 keeps everything of that kind.
"""

from __future__ import annotations

import datetime as dt
from typing import Collection, Iterable, Mapping

__all__ = ["expired_dates", "surplus_models"]


def expired_dates(
    dates: Iterable[dt.date], run_date: dt.date, keep_days: int, pinned: Collection[dt.date] = ()
) -> list[dt.date]:
    """The dates more than `keep_days` days before `run_date`, but never the newest nor a pinned one."""
    dates = set(dates)
    if keep_days == 0 or not dates:
        return []
    cutoff = run_date - dt.timedelta(days=keep_days)
    newest = max(dates)
    return sorted(day for day in dates if day < cutoff and day != newest and day not in pinned)


def surplus_models(
    models: Mapping[str, tuple[dt.date, float]], keep: int, pinned: Collection[str] = ()
) -> list[str]:
    """The versions beyond the `keep` newest (by run date, then by modification time: the values of
    `models`), never a pinned one; with keep >= 1 the newest always stays."""
    if keep == 0:
        return []
    newest_first = sorted(models, key=lambda version: models[version], reverse=True)
    return sorted(version for version in newest_first[keep:] if version not in pinned)
