//! Listing and comparing file trees (in progress).
