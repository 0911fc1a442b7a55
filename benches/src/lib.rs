//! Shared helpers for cairn's benchmarks and measurement tools.
