//! The store's backend conformance suite against a real OpenSSH sshd.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_store::backend::conformance;

#[test]
fn conformance_suite_on_openssh() {
    let Some(server) = common::server("conformance_suite_on_openssh") else {
        return;
    };
    let backend = server.fresh("conformance");
    conformance::run_all(&backend);
    if let Some(root) = server.local_path(backend.sftp_location()) {
        let left = common::temp_files(&root);
        assert!(left.is_empty(), "temp files left behind: {left:?}");
        std::fs::remove_dir_all(root).unwrap();
    }
}

#[test]
fn conformance_suite_with_one_connection() {
    let Some(mut server) = common::server("conformance_suite_with_one_connection") else {
        return;
    };
    server.opts.connections = 1;
    let backend = server.fresh("conformance-one");
    conformance::run_all(&backend);
    if let Some(root) = server.local_path(backend.sftp_location()) {
        std::fs::remove_dir_all(root).unwrap();
    }
}
