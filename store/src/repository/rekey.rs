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
use crate::config::Config;
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

/// What [`Repository::reseal_config`] did.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ConfigReseal {
    /// The epoch the config was under.
    pub from_epoch: u32,
    /// The epoch it is under now (the current one).
    pub epoch: u32,
    /// Whether it was replaced (false: it already was under `epoch`).
    pub replaced: bool,
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

    /// Drops every epoch but the current one from the key files
    /// `credential` opens (the end of `key rotate --rewrite`, once no
    /// object but the config uses the dropped epochs, and the config was
    /// sealed again with [`Self::reseal_config`]). Other key files as in
    /// [`Self::rotate_key`]. Callers hold an exclusive lock.
    ///
    /// The config on the target decides what may go: if it is still under
    /// an old epoch (a target that cannot replace it), that epoch is kept,
    /// restricted to opening the config only (key set version 2,
    /// docs/format.md §2.2). And the new set must open the config on the
    /// target before any key file is written, so the key files never lose
    /// the config's epoch, whatever order a caller gets wrong.
    pub fn drop_old_epochs(
        &mut self,
        credential: &Credential<'_>,
        remove_others: bool,
    ) -> Result<KeyRewrap> {
        let config = Repository::read_config_bytes(self.backend.as_ref())?;
        let config_epoch = ObjectHeader::decode(&config, ObjectKind::Config, "config")?.epoch;
        let keep: Vec<u32> = if config_epoch == self.keys.current_epoch() {
            Vec::new()
        } else {
            vec![config_epoch]
        };
        self.rewrap_keys(credential, remove_others, &mut |keys| {
            keys.retain_epochs(&keep);
            keys.restrict_to_config(&keep);
            Config::open(&config, keys).map(|_| ()).map_err(|e| {
                Error::InvalidInput(format!(
                    "the key set without its old epochs would not open the config on the \
                     target ({e}); nothing was changed"
                ))
            })
        })
    }

    /// Seals the config again under the current epoch and replaces it on
    /// the target ([`crate::Backend::replace`], atomic): the step of `key
    /// rotate --rewrite` that lets [`Self::drop_old_epochs`] drop the
    /// config's old epoch too. Nothing is written when the config already
    /// is under the current epoch (a rerun after a crash). The content is
    /// the config on the target, which must be the one this repository
    /// was opened with. Callers hold an exclusive lock.
    ///
    /// A target that cannot replace atomically fails with
    /// [`crate::BackendError::Unsupported`], having changed nothing.
    pub fn reseal_config(&mut self) -> Result<ConfigReseal> {
        let bytes = Repository::read_config_bytes(self.backend.as_ref())?;
        let from_epoch = ObjectHeader::decode(&bytes, ObjectKind::Config, "config")?.epoch;
        let epoch = self.keys.current_epoch();
        if from_epoch == epoch {
            return Ok(ConfigReseal {
                from_epoch,
                epoch,
                replaced: false,
            });
        }
        let config = Config::open(&bytes, &self.keys)?;
        if config != self.config {
            return Err(Error::InvalidInput(
                "the config on the target changed since the repository was opened (it is \
                 written only by `cairn init`); nothing was changed: run `cairn check`, then \
                 the command again"
                    .into(),
            ));
        }
        let sealed = config.seal(&self.keys, self.rng.as_ref())?;
        self.backend.replace(&Handle::config(), &sealed)?;
        Ok(ConfigReseal {
            from_epoch,
            epoch,
            replaced: true,
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

    /// The data-key epoch of the repository's config (written at `init`,
    /// and again by `key rotate --rewrite`).
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

    /// A memory backend that cannot replace (as an SFTP server without
    /// posix-rename): a test double for the fallback.
    struct NoReplace(MemoryBackend);

    impl Backend for NoReplace {
        fn location(&self) -> String {
            "no-replace".into()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<crate::ObjectInfo>, crate::BackendError> {
            self.0.list(kind)
        }
        fn read(&self, h: &crate::Handle) -> Result<Vec<u8>, crate::BackendError> {
            self.0.read(h)
        }
        fn read_range(
            &self,
            h: &crate::Handle,
            offset: u64,
            len: u64,
        ) -> Result<Vec<u8>, crate::BackendError> {
            self.0.read_range(h, offset, len)
        }
        fn write_new(&self, h: &crate::Handle, data: &[u8]) -> Result<(), crate::BackendError> {
            self.0.write_new(h, data)
        }
        fn replace(&self, h: &crate::Handle, _: &[u8]) -> Result<(), crate::BackendError> {
            Err(crate::BackendError::Unsupported {
                op: "replace",
                object: h.to_string(),
                message: "no atomic replace here".into(),
            })
        }
        fn delete(&self, h: &crate::Handle) -> Result<(), crate::BackendError> {
            self.0.delete(h)
        }
        fn stat(&self, h: &crate::Handle) -> Result<crate::ObjectInfo, crate::BackendError> {
            self.0.stat(h)
        }
    }

    /// A snapshot manifest's JSON, for forgeries.
    const SNAPSHOT: &[u8] = br#"{"time":1,"hostname":"h","username":"u","kind":"files","paths":[],"tags":[],"parent":null,"root":"0000000000000000000000000000000000000000000000000000000000000000","program_version":"x","stats":{}}"#;

    fn open(backend: &Arc<dyn Backend>) -> crate::error::Result<Repository> {
        Repository::open(
            backend.clone(),
            &Credential::Password(b"pw"),
            options(b"open"),
        )
    }

    #[test]
    fn a_resealed_config_lets_every_old_epoch_go_and_its_old_bytes_are_refused() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let mut repo = init(&backend);
        let retired = repo.keys().clone();
        let old_config = backend.read(&crate::Handle::config()).unwrap();
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        let done = repo.reseal_config().unwrap();
        assert_eq!((done.from_epoch, done.epoch, done.replaced), (0, 1, true));
        assert_eq!(repo.config_epoch().unwrap(), 1);
        // A crash here leaves every epoch in the key files: it opens, and
        // the rerun finds nothing to replace.
        assert_eq!(
            open(&backend).unwrap().keys().epochs().collect::<Vec<_>>(),
            vec![0, 1]
        );
        let again = repo.reseal_config().unwrap();
        assert!(!again.replaced);
        let keys = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(keys.epochs, vec![1]);
        drop(repo);
        let repo = open(&backend).unwrap();
        assert_eq!(repo.keys().epochs().collect::<Vec<_>>(), vec![1]);
        let json = serde_json::to_vec(repo.config()).unwrap();
        drop(repo);

        // The old config put back (a replay) is refused, naming why.
        let new_config = backend.read(&crate::Handle::config()).unwrap();
        memory.raw_put(&crate::Handle::config(), &old_config);
        let Err(e) = open(&backend) else {
            panic!("the old config was accepted")
        };
        let e = e.to_string();
        assert!(e.contains("key epoch 0") && e.contains("retired"), "{e}");
        // So is a config forged with the retired keys, whatever epoch its
        // header claims: 0 is no longer held, and 1's key is not theirs.
        for epoch in [0u32, 1] {
            let mut forged =
                crate::object::seal_metadata(ObjectKind::Config, &json, &retired, &rng(b"f"))
                    .unwrap();
            forged[8..12].copy_from_slice(&epoch.to_le_bytes());
            memory.raw_put(&crate::Handle::config(), &forged);
            let Err(e) = open(&backend) else {
                panic!("a forged config under epoch {epoch} was accepted")
            };
            let e = e.to_string();
            let why = if epoch == 0 {
                "retired"
            } else {
                "authentication failed"
            };
            assert!(e.contains(why), "{epoch}: {e}");
        }
        memory.raw_put(&crate::Handle::config(), &new_config);
        open(&backend).unwrap();
    }

    fn rng(seed: &[u8]) -> SeededRandom {
        SeededRandom::new(seed)
    }

    #[test]
    fn a_repository_left_with_a_config_only_epoch_retires_it_on_the_next_rewrite() {
        // What earlier versions' rewrites (and targets without an atomic
        // replace) leave: the config under epoch 0, kept for it alone.
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        let keys = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(keys.epochs, vec![0, 1]);
        drop(repo);
        let mut repo = open(&backend).unwrap();
        assert!(repo.keys().opens_config_only(0));
        assert!(repo.reseal_config().unwrap().replaced);
        let keys = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(keys.epochs, vec![1]);
        let repo = open(&backend).unwrap();
        assert!(!repo.keys().opens_config_only(0));
        assert_eq!(repo.keys().encode()[0], 1, "a version 1 key set again");
    }

    #[test]
    fn a_target_without_replace_keeps_the_config_epoch_for_the_config_only() {
        let backend: Arc<dyn Backend> = Arc::new(NoReplace(MemoryBackend::new()));
        let mut repo = init(&backend);
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        let e = repo.reseal_config().unwrap_err();
        assert!(
            matches!(&e, Error::Backend(b) if b.is_unsupported()),
            "{e:?}"
        );
        assert_eq!(repo.config_epoch().unwrap(), 0, "nothing changed");
        let keys = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(keys.epochs, vec![0, 1]);
        assert!(open(&backend).unwrap().keys().opens_config_only(0));
    }

    #[test]
    fn epochs_are_not_dropped_when_the_new_set_would_not_open_the_config() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let mut repo = init(&backend);
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        repo.reseal_config().unwrap();
        // The config on the target is damaged after its header.
        let config = crate::Handle::config();
        let good = backend.read(&config).unwrap();
        assert!(memory.corrupt(&config, 50, 1));
        let keys_before = backend.list(ObjectKind::Key).unwrap();
        let e = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("would not open the config"), "{e}");
        assert_eq!(backend.list(ObjectKind::Key).unwrap(), keys_before);
        memory.raw_put(&config, &good);
        assert_eq!(
            open(&backend).unwrap().keys().epochs().collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn a_config_changed_since_opening_is_not_resealed() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let mut repo = init(&backend);
        let before_rotation = repo.keys().clone();
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        // Another config under epoch 0, as someone holding the old keys
        // could write before the rewrite: other settings.
        let mut other = repo.config().clone();
        other.compression_level = 19;
        let sealed = other.seal(&before_rotation, &rng(b"other")).unwrap();
        memory.raw_put(&crate::Handle::config(), &sealed);
        let e = repo.reseal_config().unwrap_err().to_string();
        assert!(e.contains("changed since the repository was opened"), "{e}");
        assert_eq!(backend.read(&crate::Handle::config()).unwrap(), sealed);
    }

    #[test]
    fn without_a_resealed_config_its_epoch_opens_only_the_config() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut repo = init(&backend);
        let retired = repo.keys().clone();
        repo.rotate_key(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(repo.config_epoch().unwrap(), 0);
        let done = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(done.epochs, vec![0, 1]);
        drop(repo);
        // The config still opens (epoch 0 is kept for it) ...
        let repo = open(&backend).unwrap();
        assert!(repo.keys().opens_config_only(0));
        assert!(!repo.keys().opens_config_only(1));
        // ... but an object forged under it with the retired keys is refused.
        let forged =
            crate::object::seal_metadata(ObjectKind::Snapshot, SNAPSHOT, &retired, &rng(b"forger"))
                .unwrap();
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

        // Dropping old epochs keeps the current one and the config's (not
        // sealed again here).
        let done = repo
            .drop_old_epochs(&Credential::Password(b"pw"), false)
            .unwrap();
        assert_eq!(done.epochs, vec![0, 2]);
        assert_eq!(reopen().keys().epochs().collect::<Vec<_>>(), vec![0, 2]);
    }
}
