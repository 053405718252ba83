"""`sparkals generate`: write a synthetic Retail Rocket style event log (the demo's data)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from sparkals.errors import PipelineError
from sparkals.generate import GeneratorSpec, generate_events
from sparkals.vocabulary import INPUT_FORMATS

__all__ = ["GenerateResult", "run"]


@dataclass(frozen=True)
class GenerateResult:
    path: str
    events: int
    users: int
    items: int


def run(spark: SparkSession, spec: GeneratorSpec, out: str, fmt: str = "csv") -> GenerateResult:
    """Generate per `spec` and write to `out` as CSV (with a header), JSON lines or Parquet."""
    if fmt not in INPUT_FORMATS:
        raise PipelineError(f"unknown format {fmt!r}: use {', '.join(INPUT_FORMATS)}")
    writer = generate_events(spark, spec).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").csv(out)
    elif fmt == "json":
        writer.json(out)
    else:
        writer.parquet(out)
    return GenerateResult(path=out, events=spec.events, users=spec.users, items=spec.items)
