//! Sigma correlation rules (specification v2.1.0): `event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, `value_sum`, `value_avg`, `value_percentile`,
//! with `group-by`, `timespan`, `aliases`, `generate` and correlations of correlations.
//!
//! ```text
//! base-rule matches ─► Input (ts, correlation, position, group key, value)
//!   ─► share (by correlation and group, one thread each; see `shard`)
//!   ─► sorter (external merge sort: time order at bounded memory)
//!   ─► Correlator (per correlation, per group state; expires with the timespan)
//!   ─► CorrelationFinding ─► (inputs of outer correlations)
//! ```
//!
//! Semantics, where the specification leaves them open:
//! - a window is inclusive: events at `t` and `t + timespan` are in one window;
//! - conditions that only grow (`gt`, `gte`) are checked on a sliding window after every
//!   event, and a group's state is cleared when it fires (one finding per burst); other
//!   conditions (`lt`, `lte`, `eq`, `neq`, ranges) are checked on a window that opens at a
//!   group's first event and closes `timespan` later;
//! - an event without a value for a `group-by` field is not counted (as SIEM group-bys do);
//! - `value_percentile` fires for an event whose `field` value makes up no more (or less)
//!   than the condition's percentage of its group's events in the window so far.

pub mod engine;
pub mod parse;
pub mod shard;
pub mod sorter;

pub use engine::{CorrelationFinding, Correlator, feeds_correlations, inputs_for, push_inputs_for};
pub use parse::{Condition, Correlation, CorrelationSet, Kind, Source};
pub use shard::{Correlated, correlate_shares, parts_for, place_of, share_of, shares_for};
pub use sorter::{Input, Sorter};
