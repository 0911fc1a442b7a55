//! Key rotation's part in the store: rewriting the key files with a changed
//! key set (a new data-key epoch, or old epochs dropped), and reading the
//! epoch an object was written under.
//!
//! Each key file wraps the whole key set under a key derived from its own
//! password or raw key, so only someone who can open a key file can write
//! its replacement. A rotation therefore rewrites the key files the given
//! credential opens and refuses, before changing anything, when others
//! exist (unless told to remove them). The new epoch's key is stored only
//! inside key files: nothing derivable from the old key set leads to it
//! (docs/key-rotation.md). Replacements are written before the key files
//! they replace are deleted, so at every point some key file opens the
//! repository; a key file left behind by a crash holds a subset of the
//! new set's epochs, and is merged back by the next rotation (openers try
//! the key file with the highest epoch first, §2.3).

use super::Repository;
use crate::backend::{Handle, ObjectKind};
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::keyfile::{Credential, KdfParams, KeyFile, KeyFileInfo, KeyListing, seal_key_file};
use crate::lock::RepoLock;
use crate::object::{HEADER_LEN, ObjectHeader};
use serde::Serialize;

/// One key file the credential opens.
struct OpenedKeyFile {
    id: Id,
    params: KdfParams,
    info: KeyFileInfo,
    keys: MasterKeys,
}

/// What rewriting the key files did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyRewrap {
    /// The epochs of the key set now in the key files, ascending.
    pub epochs: Vec<u32>,
    /// The epoch new objects are written under.
    pub current_epoch: u32,
    /// Each key file rewritten: (old id, new id).
    pub replaced: Vec<(Id, Id)>,
    /// Key files the credential does not open that were removed.
    pub removed: Vec<Id>,
}

impl Repository {
    /// Adds a data-key epoch (key rotation): the key files `credential`
    /// opens are replaced by ones wrapping the set with the new epoch, and
    /// this repository writes new objects under it from now on. Other key
    /// files are refused with [`Error::OtherKeys`] before anything
    /// changes, or removed after the replacements are written when
    /// `remove_others`. Callers hold an exclusive lock.
    pub fn rotate_key(
        &mut self,
        credential: &Credential<'_>,
        remove_others: bool,
    ) -> Result<KeyRewrap> {
        let rng = self.rng.clone();
        self.rewrap_keys(credential, remove_others, &mut |keys| {
            keys.add_epoch(rng.as_ref()).map(|_| ())
        })
    }

    /// Drops every epoch but the current one and `keep` from the key files
    /// `credential` opens (the end of `key rotate --rewrite`, once no
    /// object uses the dropped epochs), and restricts `keep` (the config's
    /// epoch) to opening the config only. Other key files as in
    /// [`Self::rotate_key`]. Callers hold an exclusive lock.
    pub fn drop_old_epochs(
        &mut self,
        credential: &Credential<'_>,
        remove_others: bool,
        keep: &[u32],
    ) -> Result<KeyRewrap> {
        self.rewrap_keys(credential, remove_others, &mut |keys| {
            keys.retain_epochs(keep);
            keys.restrict_to_config(keep);
            Ok(())
        })
    }

    /// The key files, split into those `credential` opens (with what they
    /// hold) and the others (damaged ones included).
    fn split_key_files(
        &self,
        credential: &Credential<'_>,
    ) -> Result<(Vec<OpenedKeyFile>, Vec<KeyListing>)> {
        let mut opened = Vec::new();
        let mut others = Vec::new();
        for listing in self.list_keys()? {
            let handle = Handle::new(ObjectKind::Key, &listing.id);
            let name = handle.to_string();
            let bytes = match self.backend.read(&handle) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let unlocked = KeyFile::parse(&bytes, &name).and_then(|kf| {
                let keys = kf.unlock(credential, &name)?;
                Ok(keys.map(|keys| (kf.params(), kf.info.clone(), keys)))
            });
            match unlocked {
                Ok(Some((params, info, keys))) => opened.push(OpenedKeyFile {
                    id: listing.id,
                    params,
                    info,
                    keys,
                }),
                Ok(None) | Err(_) => others.push(listing),
            }
        }
        Ok((opened, others))
    }

    fn rewrap_keys(
        &mut self,
        credential: &Credential<'_>,
        remove_others: bool,
        change: &mut dyn FnMut(&mut MasterKeys) -> Result<()>,
    ) -> Result<KeyRewrap> {
        // Nothing of this session may be sealed under a set about to change.
        self.flush()?;
        let (opened, others) = self.split_key_files(credential)?;
        if !others.is_empty() && !remove_others {
            return Err(Error::OtherKeys(describe_keys(&others)));
        }
        if opened.is_empty() {
            return Err(Error::InvalidInput(
                "the key file this repository was opened with has gone; open it again and retry"
                    .into(),
            ));
        }
        let mut keys = self.keys.clone();
        for file in &opened {
            keys.merge(&file.keys)?;
        }
        change(&mut keys)?;
        let mut replaced = Vec::with_capacity(opened.len());
        for file in &opened {
            let bytes = seal_key_file(
                &keys,
                credential,
                &file.params,
                &file.info,
                self.rng.as_ref(),
            )?;
            let id = Id::of_object(&bytes);
            self.write_content_named(ObjectKind::Key, &id, &bytes)?;
            replaced.push((file.id, id));
        }
        let current = replaced
            .iter()
            .find(|(old, _)| *old == self.key_id)
            .or(replaced.first())
            .map(|(_, new)| *new);
        self.keys = keys;
        if let Some(new) = current {
            self.key_id = new;
        }
        for (old, _) in &replaced {
            self.delete_object(ObjectKind::Key, old)?;
        }
        let mut removed = Vec::new();
        if remove_others {
            for other in &others {
                self.delete_object(ObjectKind::Key, &other.id)?;
                removed.push(other.id);
            }
        }
        Ok(KeyRewrap {
            epochs: self.keys.epochs().collect(),
            current_epoch: self.keys.current_epoch(),
            replaced,
            removed,
        })
    }

    /// Seals `lock` under this repository's key set from now on (after a
    /// rotation, so that openers with the new set can read it).
    pub fn rekey_lock(&self, lock: &RepoLock) -> Result<()> {
        lock.rekey(&self.keys)
    }

    /// The data-key epoch an object was written under (one ranged read of
    /// its header).
    pub fn object_epoch(&self, kind: ObjectKind, id: &Id) -> Result<u32> {
        self.header_epoch(&Handle::new(kind, id), kind)
    }

    /// The data-key epoch of the repository's config (written once, at
    /// `init`).
    pub fn config_epoch(&self) -> Result<u32> {
        self.header_epoch(&Handle::config(), ObjectKind::Config)
    }

    fn header_epoch(&self, handle: &Handle, kind: ObjectKind) -> Result<u32> {
        let header = self.backend.read_range(handle, 0, HEADER_LEN as u64)?;
        Ok(ObjectHeader::decode(&header, kind, &handle.to_string())?.epoch)
    }
}

/// "key file ID (host H, user U, created T)" for each, for the refusal.
fn describe_keys(keys: &[KeyListing]) -> String {
    let one = |k: &KeyListing| match &k.damaged {
        Some(why) => format!("key file {} (damaged: {why})", k.id.short(12)),
        None => format!(
            "key file {} ({}, host {}, user {}, created {} Unix time)",
            k.id.short(12),
            if k.password { "password" } else { "raw key" },
            k.info.hostname,
            k.info.username,
            k.info.created
        ),
    };
    keys.iter().map(one).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, ObjectKind};
    use crate::error::Error;
    use crate::index::BlobType;
    use crate::keyfile::{Credential, KeyFileInfo};
    use crate::random::SeededRandom;
    use crate::repository::{InitOptions, OpenOptions, Repository};
    use std::sync::Arc;

    fn options(seed: &[u8]) -> OpenOptions {
        let mut o = OpenOptions::new(None);
        o.rng = Arc::new(SeededRandom::new(seed));
        o
    }

    fn init(backend: &Arc<dyn Backend>) -> Repository {
        Repository::init(
            backend.clone(),
            &Credential::Password(b"pw"),
            &InitOptions::for_tests(),
            options(b"init"),
        )
        .unwrap()
    }

    #[test]
    fn rotation_writes_new_objects_under_the_new_epoch_and_reads_old_ones() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        let old = repo.save_blob(BlobType::Data, b"before rotation").unwrap();
        repo.flush().unwrap();
        let first_key = repo.key_id();
        let done = repo
            .rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(done.epochs, vec![0, 1]);
        assert_eq!(done.current_epoch, 1);
        assert_eq!(done.replaced.len(), 1);
        assert_eq!(done.replaced[0].0, first_key);
        assert_eq!(repo.key_id(), done.replaced[0].1);
        assert_eq!(backend.list(ObjectKind::Key).unwrap().len(), 1);
        drop(repo);

        let repo = Repository::open(
            backend.clone(),
            &Credential::Password(b"pw"),
            options(b"open"),
        )
        .unwrap();
        assert_eq!(repo.keys().current_epoch(), 1);
        let new = repo.save_blob(BlobType::Data, b"after rotation").unwrap();
        repo.flush().unwrap();
        let epoch_of = |id| {
            let (pack, _) = repo.locate_blob(id).unwrap().unwrap();
            repo.object_epoch(ObjectKind::Pack, &pack).unwrap()
        };
        assert_eq!(epoch_of(&old.id), 0);
        assert_eq!(epoch_of(&new.id), 1);
        assert_eq!(repo.load_blob(&old.id).unwrap(), b"before rotation");
        assert_eq!(repo.config_epoch().unwrap(), 0);
        for id in repo.index_file_ids().unwrap() {
            assert!(repo.object_epoch(ObjectKind::Index, &id).unwrap() <= 1);
        }
    }

    #[test]
    fn after_the_old_epochs_are_dropped_the_config_epoch_opens_only_the_config() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        let retired = repo.keys().clone();
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        let config_epoch = repo.config_epoch().unwrap();
        assert_eq!(config_epoch, 0);
        let done = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false, &[config_epoch])
            .unwrap();
        assert_eq!(done.epochs, vec![0, 1]);
        drop(repo);
        // The config still opens (epoch 0 is kept for it) ...
        let repo = Repository::open(
            backend.clone(),
            &Credential::Password(b"pw"),
            options(b"open"),
        )
        .unwrap();
        assert!(repo.keys().opens_config_only(0));
        assert!(!repo.keys().opens_config_only(1));
        // ... but an object forged under it with the retired keys is refused.
        let payload = br#"{"time":1,"hostname":"h","username":"u","kind":"files","paths":[],"tags":[],"parent":null,"root":"0000000000000000000000000000000000000000000000000000000000000000","program_version":"x","stats":{}}"#;
        let rng = SeededRandom::new(b"forger");
        let forged =
            crate::object::seal_metadata(ObjectKind::Snapshot, payload, &retired, &rng).unwrap();
        let id = crate::Id::of_object(&forged);
        backend
            .write_new(&crate::Handle::new(ObjectKind::Snapshot, &id), &forged)
            .unwrap();
        let err = repo.load_snapshot(&id).unwrap_err().to_string();
        assert!(err.contains("opens only the config"), "{err}");
        // The same forgery under the current epoch needs the new key.
        assert_eq!(repo.keys().current_epoch(), 1);
    }

    #[test]
    fn other_keys_are_refused_before_any_change_or_removed_when_asked() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        let other = repo
            .add_key(
                &Credential::Password(b"other"),
                &crate::KdfParams::INSECURE_FAST,
                &KeyFileInfo {
                    created: 7,
                    hostname: "elsewhere".into(),
                    username: "bob".into(),
                    epoch: None,
                },
            )
            .unwrap();
        let keys_before = backend.list(ObjectKind::Key).unwrap();
        let err = repo
            .rotate_key(&Credential::Password(b"pw"), false)
            .unwrap_err();
        assert!(matches!(&err, Error::OtherKeys(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains(&other.short(12)), "{message}");
        assert!(message.contains("elsewhere") && message.contains("bob"));
        assert!(message.contains("--remove-other-keys"));
        assert_eq!(backend.list(ObjectKind::Key).unwrap(), keys_before);
        assert_eq!(repo.keys().current_epoch(), 0);

        let done = repo.rotate_key(&Credential::Password(b"pw"), true).unwrap();
        assert_eq!(done.removed, vec![other]);
        assert_eq!(backend.list(ObjectKind::Key).unwrap().len(), 1);
        assert!(
            Repository::open(
                backend.clone(),
                &Credential::Password(b"other"),
                options(b"o")
            )
            .is_err()
        );
    }

    #[test]
    fn a_key_file_left_behind_is_merged_and_the_newest_opens_first() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        // A rotation that stopped after writing its key file: the old one
        // (epoch 0 only) is still there beside the new one.
        let old_key = backend
            .read(&crate::Handle::new(ObjectKind::Key, &repo.key_id()))
            .unwrap();
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        let old_id = crate::Id::of_object(&old_key);
        backend
            .write_new(&crate::Handle::new(ObjectKind::Key, &old_id), &old_key)
            .unwrap();
        let reopen = || {
            Repository::open(
                backend.clone(),
                &Credential::Password(b"pw"),
                options(b"again"),
            )
            .unwrap()
        };
        assert_eq!(reopen().keys().current_epoch(), 1);
        // The next rotation replaces both key files with one set.
        let mut repo = reopen();
        let done = repo
            .rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(done.epochs, vec![0, 1, 2]);
        assert_eq!(done.replaced.len(), 2);
        assert_eq!(backend.list(ObjectKind::Key).unwrap().len(), 2);
        assert_eq!(reopen().keys().epochs().collect::<Vec<_>>(), vec![0, 1, 2]);

        // Dropping old epochs keeps the current one and the ones asked for.
        let done = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false, &[0])
            .unwrap();
        assert_eq!(done.epochs, vec![0, 2]);
        assert_eq!(reopen().keys().epochs().collect::<Vec<_>>(), vec![0, 2]);
    }
}
