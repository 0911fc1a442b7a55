//! Fuzz target `store_patch`: the patch-blob parser and applier
//! (`cairn_store::patch::Patch::decode`, `Patch::apply`) on hostile
//! encodings, and the diff/apply round trip on data the input shapes.
//! Patch encodings are authenticated before they are parsed, so a hostile
//! one comes only from a holder of the key; still, it must give errors,
//! never a panic or an unbounded allocation.
//!
//! The first input byte picks a mode:
//! - even: the rest is a patch encoding; when it parses, it is applied to
//!   zero bases of the lengths it declares (capped) and to bases of wrong
//!   lengths;
//! - odd: the rest is split into an old disk range and edits; the old range
//!   is cut into bases, the new range diffed against them, encoded, decoded
//!   and applied, and the result must equal the new range.

#![no_main]

use cairn_store::Id;
use cairn_store::patch::{Patch, PlacedBase, diff_aligned, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(p) = Patch::decode(rest) {
            let bases: Vec<Vec<u8>> = p
                .bases
                .iter()
                .map(|(_, len)| vec![0u8; (*len).min(1 << 20) as usize])
                .collect();
            let refs: Vec<&[u8]> = bases.iter().map(Vec::as_slice).collect();
            let want = p.output_len().min(1 << 20) as usize;
            let _ = p.apply(&refs, want);
            let _ = p.apply(&refs[..refs.len() / 2], want);
            for n in 0..p.bases.len() {
                let _ = p.base_shift(n as u8);
            }
        }
        return;
    }
    // Round trip: old disk = rest; two cut points and an edit from the
    // first bytes; block size 64 so small inputs cross blocks.
    if rest.len() < 4 {
        return;
    }
    let old = &rest[4..];
    let cut = |b: u8| (b as usize * old.len()) / 256;
    let (c1, c2) = (
        cut(rest[0]).min(cut(rest[1])),
        cut(rest[0]).max(cut(rest[1])),
    );
    let bases = [
        PlacedBase {
            data: &old[..c1],
            pos: 0,
        },
        PlacedBase {
            data: &old[c1..c2],
            pos: c1 as i128,
        },
        PlacedBase {
            data: &old[c2..],
            pos: c2 as i128,
        },
    ];
    let mut new = old.to_vec();
    if let Some(b) = new.get_mut(cut(rest[2])) {
        *b ^= rest[3] | 1;
    }
    let start = cut(rest[3]).min(new.len());
    let new = &new[start..];
    let Some(ops) = diff_aligned(new, start as u64, &bases, 64, usize::MAX) else {
        panic!("an unlimited diff always succeeds");
    };
    let ids: Vec<(Id, u32)> = bases
        .iter()
        .enumerate()
        .map(|(n, b)| (Id([n as u8; 32]), b.data.len() as u32))
        .collect();
    let enc = encode(&ids, &ops, new);
    let p = Patch::decode(&enc).expect("own encoding parses");
    let refs: Vec<&[u8]> = bases.iter().map(|b| b.data).collect();
    assert_eq!(p.apply(&refs, new.len()).expect("own patch applies"), new);
});
