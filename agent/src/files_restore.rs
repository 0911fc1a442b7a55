//! File-tree restore (in progress).
