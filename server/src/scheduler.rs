//! Runs crawlers on their cron schedules, in the background, until shutdown.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tarn_catalog::{Crawler, Schedule};
use tarn_sql::QueryEngine;
use tokio_util::sync::CancellationToken;

/// How often the catalog is re-read for crawlers created or changed elsewhere.
const POLL: Duration = Duration::from_secs(30);

/// When each scheduled crawler fires next.
#[derive(Debug, Default)]
struct Due {
    /// name → (schedule text, crawler creation time, next firing).
    next: HashMap<String, (String, DateTime<Utc>, DateTime<Utc>)>,
}

impl Due {
    /// The crawlers due at `now`, each moved on to its next firing. A crawler seen for the
    /// first time (or whose schedule changed) fires at its first time after `now`.
    fn take<'a>(
        &mut self,
        crawlers: impl Iterator<Item = &'a Crawler>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut due = Vec::new();
        let mut present = Vec::new();
        for c in crawlers {
            let Some(expr) = c.options.schedule.as_deref() else {
                continue;
            };
            let Ok(schedule) = Schedule::parse(expr) else {
                continue;
            };
            present.push(c.name.clone());
            let known = self
                .next
                .get(&c.name)
                .filter(|(e, created, _)| e == expr && *created == c.created_at);
            match known {
                Some((_, _, at)) if *at <= now => {
                    due.push(c.name.clone());
                    match schedule.next_after(now) {
                        Some(next) => {
                            self.next
                                .insert(c.name.clone(), (expr.to_owned(), c.created_at, next));
                        }
                        None => {
                            self.next.remove(&c.name);
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if let Some(next) = schedule.next_after(now) {
                        self.next
                            .insert(c.name.clone(), (expr.to_owned(), c.created_at, next));
                    }
                }
            }
        }
        self.next.retain(|name, _| present.contains(name));
        due
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.next.values().map(|(_, _, at)| *at).min()
    }
}

/// The scheduler loop: runs due crawlers one after another; a failed run is logged (and
/// recorded by the crawl itself), never fatal.
pub(crate) async fn run(engine: QueryEngine, cancel: CancellationToken) {
    let mut due = Due::default();
    loop {
        let snapshot = match engine.catalog().refresh().await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "crawler scheduler: cannot read the catalog");
                engine.catalog().snapshot()
            }
        };
        for name in due.take(snapshot.crawlers.values().map(|c| c.as_ref()), Utc::now()) {
            tracing::info!(crawler = %name, "running scheduled crawl");
            let run = tokio::select! {
                () = cancel.cancelled() => return,
                run = engine.run_crawler(&name) => run,
            };
            if let Err(error) = run {
                tracing::warn!(crawler = %name, %error, "scheduled crawl failed");
            }
        }
        let wait = due
            .earliest()
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .map_or(POLL, |d| d.min(POLL));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_catalog::CrawlerOptions;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn crawler(name: &str, schedule: Option<&str>) -> Crawler {
        Crawler {
            name: name.into(),
            location: "file:///x/".into(),
            database: "public".into(),
            options: CrawlerOptions {
                schedule: schedule.map(str::to_owned),
                ..CrawlerOptions::default()
            },
            created_at: at("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn crawlers_fire_at_their_times_and_only_then() {
        let every_5 = crawler("a", Some("*/5 * * * *"));
        let none = crawler("b", None);
        let mut due = Due::default();
        let list = [every_5.clone(), none];
        // First sight: nothing fires, the next time is 10:05.
        assert!(due.take(list.iter(), at("2026-01-01T10:01:00Z")).is_empty());
        assert_eq!(due.earliest(), Some(at("2026-01-01T10:05:00Z")));
        assert!(due.take(list.iter(), at("2026-01-01T10:04:59Z")).is_empty());
        assert_eq!(due.take(list.iter(), at("2026-01-01T10:05:01Z")), ["a"]);
        assert!(due.take(list.iter(), at("2026-01-01T10:06:00Z")).is_empty());
        assert_eq!(due.earliest(), Some(at("2026-01-01T10:10:00Z")));
        // A dropped crawler is forgotten.
        assert!(
            due.take(std::iter::empty(), at("2026-01-01T10:11:00Z"))
                .is_empty()
        );
        assert_eq!(due.earliest(), None);
    }
}
