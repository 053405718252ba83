"""One module per stage, each shaped read → build → write: the build is a function of DataFrames
and plain settings that tests call without storage; the stage's `run(spark, cfg, run_date)` is
where its reads and writes are, and returns a small frozen result dataclass."""
