"""Where every output lives below `output.root`: the one description of the layout, shared by the
stages, the CLI and the tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["DATED_KINDS", "Paths"]

# The folders below output.root that hold one `run_date=...` folder per night (retention's scope;
# `runs/`, the run records, is dated too but kept).
DATED_KINDS = ("ratings", "indexes", "recommendations", "similar_items", "reports", "quarantine")


@dataclass(frozen=True)
class Paths:
    """Every path below one output root; a run date picks the night's folder."""

    root: str

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    def quarantine(self, run_date: dt.date) -> str:
        return f"{self.root}/quarantine/run_date={run_date}"

    def staged_events(self, run_date: dt.date) -> str:
        """Where ingest writes the night's events until their counts allow moving them into `events`."""
        return f"{self.staging}/ingest-{run_date}"

    def run_folder(self, run_date: dt.date) -> str:
        return f"{self.root}/runs/run_date={run_date}"

    def ingest_record(self, run_date: dt.date) -> str:
        return f"{self.run_folder(run_date)}/ingest.json"

    def run_summary(self, run_date: dt.date) -> str:
        return f"{self.run_folder(run_date)}/summary.json"

    def refresh_record(self, run_date: dt.date) -> str:
        return f"{self.run_folder(run_date)}/refresh.json"

    def ratings(self, run_date: dt.date) -> str:
        return f"{self.root}/ratings/run_date={run_date}"

    def ratings_stats(self, run_date: dt.date) -> str:
        return f"{self.ratings(run_date)}/_stats.json"

    @property
    def indexes(self) -> str:
        return f"{self.root}/indexes"

    def user_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/users"

    def item_index(self, run_date: dt.date) -> str:
        return f"{self.indexes}/run_date={run_date}/items"

    @property
    def models(self) -> str:
        return f"{self.root}/models"

    def model(self, version: str) -> str:
        return f"{self.models}/{version}"

    def model_data(self, version: str) -> str:
        return f"{self.model(version)}/model"

    def model_metadata(self, version: str) -> str:
        return f"{self.model(version)}/metadata.json"

    @property
    def current_model(self) -> str:
        """Pointer to the model that serves: written only when a model passes the quality gate."""
        return f"{self.models}/_CURRENT.json"

    def recommendations(self, run_date: dt.date) -> str:
        return f"{self.root}/recommendations/run_date={run_date}"

    @property
    def latest_recommendations(self) -> str:
        """Pointer file naming the newest complete recommendations (readers start here)."""
        return f"{self.root}/recommendations/_LATEST.json"

    def similar_items(self, run_date: dt.date) -> str:
        return f"{self.root}/similar_items/run_date={run_date}"

    def reports(self, run_date: dt.date) -> str:
        return f"{self.root}/reports/run_date={run_date}"

    def tune_reports(self, run_date: dt.date) -> str:
        return f"{self.reports(run_date)}/tune"

    def dated_root(self, kind: str) -> str:
        """The folder of one of DATED_KINDS: its `run_date=...` folders are the nights'."""
        return f"{self.root}/{kind}"

    @property
    def lock(self) -> str:
        """Held by the one run writing below this root (lock.py)."""
        return f"{self.root}/_LOCK.json"

    @property
    def checkpoints(self) -> str:
        return f"{self.root}/checkpoints"

    @property
    def staging(self) -> str:
        return f"{self.root}/_staging"
