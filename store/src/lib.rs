//! cairn-store: the repository (format, crypto, packs, index, snapshots,
//! backends, local cache). Built in issue 3; this crate holds the workspace
//! slot so the dependency direction (agent -> store) is fixed from the start.
