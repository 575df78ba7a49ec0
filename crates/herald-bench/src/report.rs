//! A run's results: an ordered list of named figures, printed as a table or as one JSON object.
//!
//! It formats; it never measures.

use crate::proc::CpuTime;
use serde_json::{Map, Value};
use std::{fmt::Write as _, time::Duration};

/// One line of the report.
#[derive(Debug)]
enum Item {
    /// A heading in the table; absent from the JSON.
    Section(&'static str),
    Figure {
        /// Key in the JSON object.
        key: &'static str,
        /// Text in the table.
        label: &'static str,
        value: Value,
        unit: &'static str,
    },
}

/// The results of one run, in the order they were added.
#[derive(Debug)]
pub(crate) struct Report {
    mode: &'static str,
    items: Vec<Item>,
}

/// What CPU time is divided by in a report: a count of work items, and the names of the figures.
pub(crate) struct CpuPer {
    /// Work items done in the measured window (deliveries, acknowledged publishes).
    pub(crate) count: u64,
    /// JSON keys of the total, user and system time per item.
    pub(crate) keys: [&'static str; 3],
    /// Table label of the total per item, e.g. "hub CPU per delivered event".
    pub(crate) label: &'static str,
}

impl CpuPer {
    /// `time` per item, in microseconds (0 when there were no items).
    pub(crate) fn micros(&self, time: Duration) -> f64 {
        if self.count > 0 {
            time.as_secs_f64() * 1e6 / self.count as f64
        } else {
            0.0
        }
    }
}

impl Report {
    pub(crate) fn new(mode: &'static str) -> Self {
        Self {
            mode,
            items: Vec::new(),
        }
    }

    /// Starts a group of figures under `title` in the table.
    pub(crate) fn section(&mut self, title: &'static str) {
        self.items.push(Item::Section(title));
    }

    /// Adds one figure. Floats are rounded to three decimals.
    pub(crate) fn add(
        &mut self,
        key: &'static str,
        label: &'static str,
        value: impl Into<Value>,
        unit: &'static str,
    ) {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().expect("an f64 number converts to f64");
                Value::from((x * 1000.0).round() / 1000.0)
            }
            other => other,
        };
        self.items.push(Item::Figure {
            key,
            label,
            value,
            unit,
        });
    }

    /// Adds the hub's CPU figures: its total, the total and its user and system parts per unit
    /// of work (`per`), and each node's total when there are several nodes.
    pub(crate) fn add_hub_cpu(&mut self, hub: CpuTime, by_node: &[CpuTime], per: &CpuPer) {
        let [total_key, user_key, system_key] = per.keys;
        self.add("hubCpuSeconds", "hub CPU", hub.total().as_secs_f64(), "s");
        self.add(total_key, per.label, per.micros(hub.total()), "µs");
        self.add(user_key, "  of which user", per.micros(hub.user), "µs");
        self.add(
            system_key,
            "  of which system",
            per.micros(hub.system),
            "µs",
        );
        if by_node.len() > 1 {
            let seconds = by_node
                .iter()
                .map(|time| format!("{:.2}", time.total().as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / ");
            self.add("hubCpuSecondsByNode", "hub CPU by node", seconds, "s");
        }
    }

    /// The number stored under `key`, if any.
    pub(crate) fn number(&self, key: &str) -> Option<f64> {
        self.items.iter().find_map(|item| match item {
            Item::Figure { key: k, value, .. } if *k == key => value.as_f64(),
            _ => None,
        })
    }

    /// One JSON object: `mode` plus every figure by key.
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("mode".into(), self.mode.into());
        for item in &self.items {
            if let Item::Figure { key, value, .. } = item {
                object.insert((*key).into(), value.clone());
            }
        }
        Value::Object(object)
    }

    /// A plain-text table, one figure per line.
    pub(crate) fn to_table(&self) -> String {
        let width = self
            .items
            .iter()
            .map(|item| match item {
                Item::Figure { label, .. } => label.len(),
                Item::Section(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let mut out = format!("herald-bench {}\n", self.mode);
        for item in &self.items {
            match item {
                Item::Section(title) => {
                    let _ = writeln!(out, "\n{title}");
                }
                Item::Figure {
                    label, value, unit, ..
                } => {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    let _ = writeln!(out, "  {label:<width$}  {value:>12} {unit}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_their_order_in_the_table_and_their_keys_in_json() {
        let mut report = Report::new("idle");
        report.section("memory");
        report.add("rssPerConnectionKib", "RSS per connection", 2.34567, "KiB");
        report.add("connections", "connections", 10u64, "");
        assert_eq!(
            report.to_json(),
            serde_json::json!({"mode": "idle", "rssPerConnectionKib": 2.346, "connections": 10})
        );
        let table = report.to_table();
        assert!(table.contains("memory\n  RSS per connection         2.346 KiB"));
    }
}
