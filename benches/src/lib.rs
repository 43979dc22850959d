//! tarn's benchmarks: the harness that runs tarn side by side with DuckDB and stock DataFusion.
//! Nothing here yet; see BENCHMARKS.md.
