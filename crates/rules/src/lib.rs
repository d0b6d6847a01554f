//! Portcullis's own Sigma rules (the `rules/` directory), embedded at build time.
//!
//! Each entry is `(label, yaml)`, where the label is `builtin:rules/<path>` so
//! findings and load errors name the rule's file in the repository.

include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// The embedded rule files.
pub fn builtin() -> &'static [(&'static str, &'static str)] {
    RULES
}
