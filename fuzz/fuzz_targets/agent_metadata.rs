//! Fuzz target `agent_metadata`: the agent's parsers of metadata blobs,
//! which a compromised guest holding the key can fill with anything
//! (docs/format.md §3). Asserted: no panic, and a tree that decodes
//! encodes back to bytes that decode to the same tree.
//!
//! The first input byte picks the parser for the rest:
//! - 0: `tree::Tree::decode` (a directory's tree blob), then the restore's
//!   name checks on every node and the round trip;
//! - 1: a valid tree (below) edited by the rest (`common::mutate`), as 0;
//! - 2: `chunklist::decode_page` (an extent-list page), the level from the
//!   second byte;
//! - 3: `disk::DiskSet::decode` (a disk snapshot's root blob).

#![no_main]

#[path = "common.rs"]
mod common;

use cairn::chunklist::{Extent, decode_page};
use cairn::disk::DiskSet;
use cairn::tree::{Content, Node, NodeKind, Tree, split_path, validate_name};
use cairn_store::Id;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The id the parsers name in their errors.
const ID: Id = Id([0x11; 32]);

/// A tree with one node of each kind that carries fields.
fn sample() -> &'static Vec<u8> {
    static SAMPLE: OnceLock<Vec<u8>> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let mut file = Node::new(b"file".to_vec(), NodeKind::File);
        file.size = 15;
        file.content = Some(Content::Inline(vec![
            Extent {
                len: 10,
                blob: Some(Id([7; 32])),
            },
            Extent { len: 5, blob: None },
        ]));
        let mut dir = Node::new(b"dir".to_vec(), NodeKind::Dir);
        dir.subtree = Some(Id([1; 32]));
        let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
        link.target = Some(b"../x".to_vec());
        let mut hard = Node::new(b"hard".to_vec(), NodeKind::Hardlink);
        hard.link = Some(b"dir/file".to_vec());
        let mut tree = Tree {
            nodes: vec![file, dir, link, hard],
        };
        tree.sort();
        tree.encode()
    })
}

/// Decodes a tree, runs the checks a restore makes, and checks the round
/// trip.
fn tree(bytes: &[u8]) {
    let Ok(tree) = Tree::decode(&ID, bytes) else {
        return;
    };
    for node in &tree.nodes {
        let _ = validate_name(&node.name);
        let _ = node.name_path();
        if let Some(link) = &node.link {
            for c in split_path(link) {
                let _ = validate_name(c);
            }
        }
    }
    let again = Tree::decode(&ID, &tree.encode()).expect("an encoded tree decodes");
    assert_eq!(again, tree, "tree round trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => tree(rest),
        1 => tree(&common::mutate(sample(), rest)),
        2 => {
            if let Some((&level, page)) = rest.split_first() {
                let _ = decode_page(&ID, page, level % 4);
            }
        }
        _ => {
            let _ = DiskSet::decode(&ID, rest);
        }
    }
});
