//! Deterministic datasets.
