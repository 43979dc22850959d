//! The benchmark's three datasets at a tiny scale, for the `.slt` suite to run the benchmark's
//! queries on: TPC-H from the tpchgen generator (the one behind PyPI's `tpchgen-cli`), and an
//! H2O group-by table and a date-partitioned events table with the columns, types and value
//! ranges that `benches/scripts/bench.py` generates (falsa, and its own events generator),
//! drawn from a seeded generator here so that every run writes the same files.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchReader, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// Changes whenever a generator here changes what it writes: callers that keep the files
/// between runs name their folder with it.
pub const VERSION: u32 = 2;

/// The eight TPC-H tables, in the order TPC-H lists them.
pub const TPCH_TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// Rows of the H2O table, and its `k` (the number of distinct `id1`, `id2`, `id4`, `id5`);
/// `id3` and `id6` take `H2O_ROWS / H2O_K` values, as in falsa.
const H2O_ROWS: usize = 400;
const H2O_K: u64 = 4;

/// The events table covers the same 60 days as the benchmark's (so that the queries' dates
/// find rows), in fewer, smaller files; its ids start where the benchmark's lookup of
/// `event_id = 4242424` finds one.
const EVENT_START: (i32, u32, u32) = (2026, 1, 1);
const EVENT_DAYS: i64 = 60;
const EVENT_FILES_PER_DAY: usize = 2;
const EVENT_ROWS_PER_FILE: usize = 10;
const EVENT_FIRST_ID: i64 = 4_242_000;

/// Writes TPC-H at `scale` into `dir/tpch/<table>/`, the H2O table into `dir/h2o/x/` and the
/// events table into `dir/events/events/dt=<day>/`.
pub fn write_all(dir: &Path, scale: f64) -> anyhow::Result<()> {
    write_tpch(&dir.join("tpch"), scale)?;
    write_h2o(&dir.join("h2o"))?;
    write_events(&dir.join("events"))
}

/// Writes every TPC-H table at `scale` to `dir/<table>/part-0.parquet`.
pub fn write_tpch(dir: &Path, scale: f64) -> anyhow::Result<()> {
    for table in TPCH_TABLES {
        let batches: Box<dyn RecordBatchReader> = match table {
            "region" => Box::new(RegionArrow::new(RegionGenerator::new(scale, 1, 1))),
            "nation" => Box::new(NationArrow::new(NationGenerator::new(scale, 1, 1))),
            "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(scale, 1, 1))),
            "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(scale, 1, 1))),
            "part" => Box::new(PartArrow::new(PartGenerator::new(scale, 1, 1))),
            "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1))),
            "orders" => Box::new(OrderArrow::new(OrderGenerator::new(scale, 1, 1))),
            _ => Box::new(LineItemArrow::new(LineItemGenerator::new(scale, 1, 1))),
        };
        let folder = dir.join(table);
        std::fs::create_dir_all(&folder)?;
        write_parquet(&folder.join("part-0.parquet"), batches.schema(), batches)?;
    }
    Ok(())
}

/// The H2O group-by table `x`: falsa's columns (`id1`–`id3` text, `id4`–`id6` and `v1`, `v2`
/// integers, `v3` a float; `v1`–`v3` declared NOT NULL) and value ranges, no NULLs. Answers
/// must not depend on the order in which the engine adds rows, so `v3` is a multiple of 1/64.
pub fn write_h2o(dir: &Path) -> anyhow::Result<()> {
    let mut rng = SplitMix(42);
    let groups = H2O_ROWS as u64 / H2O_K;
    let id = |n: u64, width: usize, rng: &mut SplitMix| -> String {
        format!("id{:0width$}", rng.between(1, n))
    };
    let (mut id1, mut id2, mut id3) = (Vec::new(), Vec::new(), Vec::new());
    let (mut id4, mut id5, mut id6) = (Vec::new(), Vec::new(), Vec::new());
    let (mut v1, mut v2, mut v3) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..H2O_ROWS {
        id1.push(id(H2O_K, 3, &mut rng));
        id2.push(id(H2O_K, 3, &mut rng));
        id3.push(id(groups, 10, &mut rng));
        id4.push(rng.between(1, H2O_K) as i64);
        id5.push(rng.between(1, H2O_K) as i64);
        id6.push(rng.between(1, groups) as i64);
        v1.push(rng.between(1, 5) as i64);
        v2.push(rng.between(1, 15) as i64);
        // In 64ths: sums come out the same whatever order the rows are added in.
        v3.push((rng.unit() * 6400.0).floor() / 64.0);
    }
    let batch = RecordBatch::try_from_iter_with_nullable([
        ("id1", Arc::new(StringArray::from(id1)) as ArrayRef, true),
        ("id2", Arc::new(StringArray::from(id2)), true),
        ("id3", Arc::new(StringArray::from(id3)), true),
        ("id4", Arc::new(Int64Array::from(id4)), true),
        ("id5", Arc::new(Int64Array::from(id5)), true),
        ("id6", Arc::new(Int64Array::from(id6)), true),
        ("v1", Arc::new(Int64Array::from(v1)), false),
        ("v2", Arc::new(Int64Array::from(v2)), false),
        ("v3", Arc::new(Float64Array::from(v3)), false),
    ])?;
    write_file(&dir.join("x"), "x.parquet", &batch)
}

/// The events table: one `dt=YYYY-MM-DD` folder a day, each file an hour of events in arrival
/// order, with the benchmark's columns; about 30% of `amount`s are NULL.
pub fn write_events(dir: &Path) -> anyhow::Result<()> {
    const TYPES: [&str; 10] = [
        "view",
        "click",
        "search",
        "add_to_cart",
        "purchase",
        "login",
        "logout",
        "share",
        "like",
        "comment",
    ];
    const COUNTRIES: [&str; 20] = [
        "US", "DE", "FR", "GB", "BR", "IN", "JP", "CN", "CA", "AU", "ES", "IT", "MX", "NL", "SE",
        "PL", "KR", "AR", "ZA", "NG",
    ];
    const DEVICES: [&str; 4] = ["ios", "android", "web", "desktop"];
    let (year, month, day) = EVENT_START;
    let start = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| anyhow::anyhow!("bad start date"))?;
    let mut rng = SplitMix(7);
    let mut event_id = EVENT_FIRST_ID;
    let pick = |list: &[&'static str], rng: &mut SplitMix| -> &'static str {
        list[rng.between(0, list.len() as u64 - 1) as usize]
    };
    for day in 0..EVENT_DAYS {
        let date = start + Duration::days(day);
        let folder = dir
            .join("events")
            .join(format!("dt={}", date.format("%Y-%m-%d")));
        for part in 0..EVENT_FILES_PER_DAY {
            let hour = (date + Duration::hours(part as i64))
                .and_utc()
                .timestamp_micros();
            let mut offsets: Vec<i64> = (0..EVENT_ROWS_PER_FILE)
                .map(|_| rng.between(0, 3_599_999_999) as i64)
                .collect();
            offsets.sort_unstable();
            let n = EVENT_ROWS_PER_FILE as i64;
            let mut amount = Vec::new();
            let (mut users, mut types, mut countries, mut devices) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..EVENT_ROWS_PER_FILE {
                // A few heavy users, as the benchmark's Zipf draw gives.
                users.push((rng.between(0, 99) * rng.between(0, 99) / 50) as i64);
                types.push(pick(&TYPES, &mut rng));
                countries.push(pick(&COUNTRIES, &mut rng));
                devices.push(pick(&DEVICES, &mut rng));
                // In quarters, so that sums do not depend on the order of addition.
                let value = (rng.unit() * 800.0).round() / 4.0;
                amount.push((rng.unit() >= 0.3).then_some(value));
            }
            let batch = RecordBatch::try_from_iter([
                (
                    "event_id",
                    Arc::new(Int64Array::from_iter_values(event_id..event_id + n)) as ArrayRef,
                ),
                (
                    "ts",
                    Arc::new(TimestampMicrosecondArray::from_iter_values(
                        offsets.iter().map(|o| hour + o),
                    )),
                ),
                ("user_id", Arc::new(Int64Array::from(users))),
                ("event_type", Arc::new(StringArray::from(types))),
                ("country", Arc::new(StringArray::from(countries))),
                ("device", Arc::new(StringArray::from(devices))),
                ("amount", Arc::new(Float64Array::from(amount))),
            ])?;
            write_file(&folder, &format!("part-{part:03}.parquet"), &batch)?;
            event_id += n;
        }
    }
    Ok(())
}

fn write_file(folder: &Path, name: &str, batch: &RecordBatch) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder)?;
    write_parquet(
        &folder.join(name),
        batch.schema(),
        [Ok::<_, std::convert::Infallible>(batch.clone())],
    )
}

/// `batches` as one Parquet file at `path`, with `schema` even when there are no rows.
pub fn write_parquet<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, E>>,
) -> anyhow::Result<()> {
    let mut writer = ArrowWriter::try_new(File::create(path)?, schema, None)?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.close()?;
    Ok(())
}

/// SplitMix64: a small seeded generator, the same numbers on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
