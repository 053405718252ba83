"""sparkals: e-commerce event logs to per-user recommendations with Spark ALS (implicit feedback)."""

__version__ = "0.1.0"
