//! A complete Sigma engine: rules are parsed once, compiled into shared
//! multi-pattern matchers, and scanned against [`portcullis_event::Event`]s.
//!
//! ```text
//! rule files ─► yaml (marked tree) ─► rule (documents; detection as Expr<LeafSpec>)
//!            ─► engine (logsource groups, deduplicated leaves, automata) ─► Scanner::scan
//! ```
//!
//! - `yaml` (private): YAML with line numbers and limits (rules are hostile input).
//! - [`rule`]: detection rules, filters, correlation documents.
//! - [`modifiers`]: value modifiers → leaf predicates; `pattern` (private): wildcards and escapes.
//! - [`condition`]: the condition grammar.
//! - [`logsource`]: which events a log source selects, field renames.
//! - [`engine`]: compilation and scanning.
//! - [`cache`]: parsed rule files kept on disk between runs, keyed by their text.
//!
//! Where things go: a new value modifier in `modifiers.rs`; a new log source in
//! `data/logsources.yml`; a new kind of leaf test in `engine/` (`Test`: built in `compile.rs`, evaluated in `scan.rs`).

pub mod cache;
pub mod condition;
pub mod engine;
pub mod expr;
pub mod loader;
pub mod logsource;
pub mod modifiers;
mod pattern;
pub mod rule;
mod yaml;

pub use cache::{CacheUse, RuleCache};
pub use engine::{Engine, Scanner, Unmapped};
pub use loader::{RuleSet, load_placeholders};
pub use logsource::LogsourceTable;
pub use modifiers::Placeholders;
pub use rule::{Level, LoadError, Logsource, Rule};
