//! Fuzz target `sftp_rename`: the replies of a hostile SFTP server to the
//! `posix-rename@openssh.com` exchange (`cairn_sftp`'s own SFTP packet
//! reader: VERSION with its extension list, then STATUS). The input is
//! what the server sends, packets back to back; every input must end in
//! success or an error, never a panic or an allocation beyond the packet
//! cap. (The rest of the SFTP protocol is libssh2's.)

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_sftp::fuzzing::rename_against_replies(data);
});
