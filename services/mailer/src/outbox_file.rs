//! The file transport: each email becomes an RFC 5322 `.eml` file in a folder, for
//! development, demos and air-gapped installations where someone forwards them by hand.
//!
//! Files are named `<notification_id>-<recipient>.eml` and written to a temporary name then
//! renamed, so a reader never sees half a file and a resend of the same notification to the
//! same recipient replaces the earlier file instead of adding a second one.
//!
//! An eviction alert is personal data at rest: files are created readable by their owner
//! only (0600, the folder 0700 when the outbox creates it), and [`FileOutbox::remove_notification`]
//! deletes every file of a notification when the family revokes its consent (CONTRACT C4;
//! the eviction crate's scrubber calls it after the revocation is committed).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use raccordo_core::settings::{MailSettings, MailTransportKind};

use crate::error::{Delivered, SendError};
use crate::message::OutgoingEmail;

/// Writes emails as `.eml` files into a folder, creating it when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    /// An outbox writing into `dir` (`mail.outbox_dir`).
    pub fn new(dir: impl Into<PathBuf>) -> FileOutbox {
        FileOutbox { dir: dir.into() }
    }

    /// The configured outbox when `mail.transport` is `file`: where files of revoked
    /// alerts must be removed from (whether or not this process writes them).
    pub fn from_settings(settings: &MailSettings) -> Option<FileOutbox> {
        (settings.transport == MailTransportKind::File)
            .then(|| FileOutbox::new(settings.outbox_dir.clone()))
    }

    /// The folder the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an email to `recipient` for `notification_id` is written to.
    pub fn path_for(&self, notification_id: Uuid, recipient: &str) -> PathBuf {
        self.dir
            .join(format!("{notification_id}-{}.eml", sanitise(recipient)))
    }

    /// Writes the email; `Delivered::response` says it went to a file, not to a mail server,
    /// and names the file's absolute path.
    ///
    /// # Errors
    /// [`SendError::Build`] for an email that cannot be built, [`SendError::Outbox`] when
    /// the folder or the file cannot be written.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Delivered, SendError> {
        let bytes = email.to_message()?.formatted();
        let path = self.path_for(email.notification_id, &email.to);
        create_private_dir(&self.dir)
            .await
            .map_err(SendError::Outbox)?;

        // A unique temporary name in the same folder, so the rename is atomic and two
        // writers of the same file never share a temporary.
        let temporary = self.dir.join(format!(".{}.tmp", Uuid::new_v4()));
        let written = async {
            let mut file = create_private_file(&temporary).await?;
            file.write_all(&bytes).await?;
            // Durable before it becomes visible: the delivery is recorded as done next.
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temporary, &path).await
        }
        .await;
        if let Err(error) = written {
            // Best effort: the write already failed and that is the error worth reporting.
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(SendError::Outbox(error));
        }
        // Absolute, so the record names the file whatever the reader's working folder.
        let recorded = std::path::absolute(&path).unwrap_or(path);
        Ok(Delivered {
            response: format!(
                "written to {} (file transport: no mail server involved)",
                recorded.display()
            ),
        })
    }

    /// The notifications that have at least one file in the outbox (none when the folder
    /// does not exist yet).
    ///
    /// # Errors
    /// When the folder exists but cannot be read.
    pub async fn notifications(&self) -> io::Result<Vec<Uuid>> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut ids = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if let Some(id) = notification_of(&entry.file_name().to_string_lossy()) {
                ids.push(id);
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Deletes every file of `notification_id`, whoever the recipient; returns how many.
    /// A file already gone is not an error.
    ///
    /// # Errors
    /// When the folder cannot be read or a file cannot be deleted.
    pub async fn remove_notification(&self, notification_id: Uuid) -> io::Result<usize> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await? {
            if notification_of(&entry.file_name().to_string_lossy()) != Some(notification_id) {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }
}

/// A file of the outbox, for retention (`retention.eml_days`, C9).
#[derive(Debug, Clone)]
pub struct OutboxFile {
    /// Where it is.
    pub path: PathBuf,
    /// The notification it is an email of.
    pub notification: Uuid,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

impl FileOutbox {
    /// Every email file of the outbox (none when the folder does not exist yet).
    ///
    /// # Errors
    /// When the folder exists but it or a file's metadata cannot be read.
    pub async fn files(&self) -> io::Result<Vec<OutboxFile>> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let Some(notification) = notification_of(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let modified = match entry.metadata().await {
                Ok(meta) => meta.modified()?,
                // Removed meanwhile (a revocation's scrubber): nothing to keep or delete.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            files.push(OutboxFile {
                path: entry.path(),
                notification,
                modified,
            });
        }
        Ok(files)
    }

    /// Deletes `files`; a file already gone is not an error. Returns how many went.
    ///
    /// # Errors
    /// When a file cannot be deleted.
    pub async fn remove_files(&self, files: &[OutboxFile]) -> io::Result<usize> {
        let mut removed = 0;
        for file in files {
            match tokio::fs::remove_file(&file.path).await {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }
}

/// The notification a file of the outbox belongs to: `<uuid>-<recipient>.eml`.
fn notification_of(file_name: &str) -> Option<Uuid> {
    let stem = file_name.strip_suffix(".eml")?;
    let id = stem.get(..36)?;
    stem.get(36..)?.starts_with('-').then_some(())?;
    Uuid::parse_str(id).ok()
}

/// Creates the folder (and missing parents) readable by the owner only; an existing
/// folder keeps its mode, which the operator chose.
async fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

/// Creates a new file readable and writable by the owner only.
async fn create_private_file(path: &Path) -> io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// Lowercase letters, digits, `.`, `-`, `_` and `@` stay; anything else becomes `_`, so the
/// name is safe on every file system and cannot climb out of the folder.
fn sanitise(recipient: &str) -> String {
    recipient
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' | '@' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use raccordo_smtp_sink::ReceivedMail;

    use super::*;
    use crate::message::message_id_for;

    /// A fresh folder under the system temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            TempDir(std::env::temp_dir().join(format!("raccordo-outbox-{}", Uuid::new_v4())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn email(to: &str, subject: &str) -> OutgoingEmail {
        let notification_id = Uuid::from_u128(7);
        OutgoingEmail {
            from: "Raccordo <raccordo@example.org>".into(),
            to: to.into(),
            to_name: None,
            subject: subject.into(),
            text: "testo".into(),
            html: "<p>testo</p>".into(),
            kind: "housing.ack".into(),
            notification_id,
            message_id: message_id_for(notification_id, to, "example.org"),
            urgent: false,
            reminder: false,
            list_unsubscribe: None,
            digest: false,
        }
    }

    fn eml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("outbox exists")
            .map(|entry| entry.expect("readable entry").path())
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn an_email_becomes_an_eml_file_in_a_created_folder() {
        let temp = TempDir::new();
        let outbox = FileOutbox::new(temp.0.join("nested/outbox"));

        let delivered = outbox
            .send(&email("Mario.Rossi+acc@Comune.example", "Oggetto"))
            .await
            .expect("written");

        let files = eml_files(outbox.dir());
        assert_eq!(files.len(), 1);
        assert_eq!(
            delivered.response,
            format!(
                "written to {} (file transport: no mail server involved)",
                files[0].display()
            )
        );
        assert_eq!(
            files[0].file_name().and_then(|n| n.to_str()),
            Some("00000000-0000-0000-0000-000000000007-mario.rossi_acc@comune.example.eml")
        );
        let mail = ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data: std::fs::read_to_string(&files[0]).expect("readable"),
        };
        assert_eq!(mail.subject().as_deref(), Some("Oggetto"));
        assert_eq!(
            mail.header("X-Raccordo-Kind").as_deref(),
            Some("housing.ack")
        );
        assert_eq!(mail.text_body().as_deref(), Some("testo"));
    }

    #[tokio::test]
    async fn a_resend_to_the_same_recipient_overwrites_and_others_add_files() {
        let temp = TempDir::new();
        let outbox = FileOutbox::new(&temp.0);

        outbox
            .send(&email("a@example.org", "primo"))
            .await
            .expect("written");
        outbox
            .send(&email("a@example.org", "secondo"))
            .await
            .expect("written");
        outbox
            .send(&email("b@example.org", "terzo"))
            .await
            .expect("written");

        let files = eml_files(&temp.0);
        assert_eq!(files.len(), 2, "{files:?}");
        let first = std::fs::read_to_string(&files[0]).expect("readable");
        assert!(first.contains("Subject: secondo"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_readable_by_their_owner_only_and_a_created_folder_too() {
        use std::os::unix::fs::PermissionsExt;
        let temp = TempDir::new();
        let outbox = FileOutbox::new(temp.0.join("outbox"));

        outbox
            .send(&email("a@example.org", "x"))
            .await
            .expect("written");

        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(outbox.dir()), 0o700);
        assert_eq!(
            mode(&temp.0),
            0o700,
            "missing parents are created private too"
        );
        let files = eml_files(outbox.dir());
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0]), 0o600);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_existing_folder_keeps_the_mode_the_operator_chose() {
        use std::os::unix::fs::PermissionsExt;
        let temp = TempDir::new();
        std::fs::create_dir(&temp.0).expect("a folder");
        std::fs::set_permissions(&temp.0, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let outbox = FileOutbox::new(&temp.0);

        outbox
            .send(&email("a@example.org", "x"))
            .await
            .expect("written");

        let mode = std::fs::metadata(&temp.0)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o750);
        let file = &eml_files(&temp.0)[0];
        let mode = std::fs::metadata(file)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn removing_a_notification_deletes_its_files_for_every_recipient_and_nothing_else() {
        let temp = TempDir::new();
        let outbox = FileOutbox::new(&temp.0);
        let mut other = email("a@example.org", "altro");
        other.notification_id = Uuid::from_u128(8);
        for e in [
            email("a@example.org", "x"),
            email("b@example.org", "x"),
            other,
        ] {
            outbox.send(&e).await.expect("written");
        }
        std::fs::write(temp.0.join("README.txt"), b"not an email").expect("writable");
        assert_eq!(
            outbox.notifications().await.expect("listed"),
            vec![Uuid::from_u128(7), Uuid::from_u128(8)]
        );

        let removed = outbox
            .remove_notification(Uuid::from_u128(7))
            .await
            .expect("removed");

        assert_eq!(removed, 2);
        let left: Vec<String> = eml_files(&temp.0)
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            left,
            vec![
                "00000000-0000-0000-0000-000000000008-a@example.org.eml".to_owned(),
                "README.txt".to_owned()
            ]
        );
        assert_eq!(
            outbox
                .remove_notification(Uuid::from_u128(7))
                .await
                .expect("idempotent"),
            0
        );
    }

    #[tokio::test]
    async fn a_missing_folder_has_no_notifications_and_nothing_to_remove() {
        let temp = TempDir::new();
        let outbox = FileOutbox::new(temp.0.join("never-written"));

        assert!(outbox.notifications().await.expect("listed").is_empty());
        assert_eq!(
            outbox
                .remove_notification(Uuid::from_u128(7))
                .await
                .expect("nothing"),
            0
        );
    }

    #[test]
    fn only_files_named_by_a_notification_belong_to_it() {
        let id = "00000000-0000-0000-0000-000000000007";
        assert_eq!(
            notification_of(&format!("{id}-a@b.example.eml")),
            Some(Uuid::from_u128(7))
        );
        assert_eq!(notification_of(&format!("{id}-a@b.example.txt")), None);
        assert_eq!(notification_of(&format!("{id}.eml")), None);
        assert_eq!(notification_of(&format!(".{id}.tmp")), None);
        assert_eq!(notification_of("short.eml"), None);
        assert_eq!(notification_of("é.eml"), None);
    }

    #[test]
    fn recipients_cannot_escape_the_folder() {
        assert_eq!(sanitise("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(sanitise(" X/Y\\z@a.b "), "x_y_z@a.b");
    }

    #[tokio::test]
    async fn an_unwritable_folder_is_a_transient_error() {
        let temp = TempDir::new();
        std::fs::write(&temp.0, b"a file, not a folder").expect("writable temp");
        let outbox = FileOutbox::new(temp.0.join("outbox"));

        let error = outbox
            .send(&email("a@example.org", "x"))
            .await
            .expect_err("cannot create a folder under a file");

        assert!(matches!(error, SendError::Outbox(_)));
        assert!(error.is_transient());
        let _ = std::fs::remove_file(&temp.0);
    }
}
