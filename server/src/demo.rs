//! The demo database: TPC-H at scale 0.01 from the tpchgen generator, and a small
//! date-partitioned `events` table like one a stream would feed.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tarn_catalog::TableRef;
use tarn_sql::QueryEngine;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::error::{Error, Result};

pub(crate) const DEMO_DATABASE: &str = "demo";
const SCALE: f64 = 0.01;
const EVENT_DAYS: i64 = 7;
const EVENTS_PER_DAY: i64 = 500;

fn collect<I>(batches: I) -> Result<Vec<RecordBatch>>
where
    I: Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>,
{
    batches
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Demo(e.to_string()))
}

/// Creates the demo database unless it is there already.
pub(crate) async fn load(engine: &QueryEngine) -> Result<()> {
    if engine
        .catalog()
        .snapshot()
        .database(DEMO_DATABASE)
        .is_some()
    {
        return Ok(());
    }
    tracing::info!(
        "loading demo data (TPC-H scale {SCALE} and an events table) into \"{DEMO_DATABASE}\""
    );
    let tables: Vec<(&str, Vec<RecordBatch>, Vec<String>)> = vec![
        (
            "region",
            collect(RegionArrow::new(RegionGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "nation",
            collect(NationArrow::new(NationGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "supplier",
            collect(SupplierArrow::new(SupplierGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "customer",
            collect(CustomerArrow::new(CustomerGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "part",
            collect(PartArrow::new(PartGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "partsupp",
            collect(PartSuppArrow::new(PartSuppGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "orders",
            collect(OrderArrow::new(OrderGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        (
            "lineitem",
            collect(LineItemArrow::new(LineItemGenerator::new(SCALE, 1, 1)))?,
            vec![],
        ),
        ("events", vec![events()?], vec!["dt".to_owned()]),
    ];
    engine.create_database_if_missing(DEMO_DATABASE).await?;
    for (name, batches, partitions) in tables {
        engine
            .create_table_from_batches(TableRef::new(DEMO_DATABASE, name), batches, partitions)
            .await?;
    }
    Ok(())
}

/// A week of synthetic click events, deterministic, partitioned by day (`dt=2026-01-0N`).
fn events() -> Result<RecordBatch> {
    const KINDS: [&str; 4] = ["view", "click", "add_to_cart", "purchase"];
    const DAY_MICROS: i64 = 86_400_000_000;
    const START_MICROS: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let n = EVENT_DAYS * EVENTS_PER_DAY;
    let mut ids = Vec::with_capacity(n as usize);
    let mut users = Vec::with_capacity(n as usize);
    let mut kinds = Vec::with_capacity(n as usize);
    let mut amounts = Vec::with_capacity(n as usize);
    let mut times = Vec::with_capacity(n as usize);
    let mut days = Vec::with_capacity(n as usize);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        // xorshift: repeatable without a random-number dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let day = i / EVENTS_PER_DAY;
        let kind = KINDS[(state % 4) as usize];
        ids.push(i + 1);
        users.push((state >> 8) as i64 % 200 + 1);
        kinds.push(kind);
        amounts.push((kind == "purchase").then(|| ((state >> 16) % 20_000) as f64 / 100.0));
        times.push(START_MICROS + day * DAY_MICROS + ((state >> 24) as i64 % DAY_MICROS));
        days.push(format!("2026-01-{:02}", day + 1));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Int64, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("dt", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(users)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(Float64Array::from(amounts)),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(days)),
        ],
    )
    .map_err(|e| Error::Demo(e.to_string()))
}
