"""The results layer: per-row records read once (`rowsfile`), runs located (`locate`, the only module that
opens the store), and pure functions of loaded rows: `compare`, `transfer`, `provenance`, `plotdata`, the
results `table`; `cells` computes the table's per-row-derived cells for store runs."""
