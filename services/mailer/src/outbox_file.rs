//! The file transport: each email becomes an RFC 5322 `.eml` file in a folder, for
//! development, demos and air-gapped installations where someone forwards them by hand.
//!
//! Files are named `<notification_id>-<recipient>.eml` and written to a temporary name then
//! renamed, so a reader never sees half a file and a resend of the same notification to the
//! same recipient replaces the earlier file instead of adding a second one.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::{
    message::OutgoingEmail,
    transport::{Delivered, SendError},
};

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

    /// The folder the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an email to `recipient` for `notification_id` is written to.
    pub fn path_for(&self, notification_id: Uuid, recipient: &str) -> PathBuf {
        self.dir
            .join(format!("{notification_id}-{}.eml", sanitise(recipient)))
    }

    /// Writes the email; `Delivered::response` is the file's path.
    ///
    /// # Errors
    /// [`SendError::Build`] for an email that cannot be built, [`SendError::Outbox`] when
    /// the folder or the file cannot be written.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Delivered, SendError> {
        let bytes = email.to_message()?.formatted();
        let path = self.path_for(email.notification_id, &email.to);
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(SendError::Outbox)?;

        // A unique temporary name in the same folder, so the rename is atomic and two
        // writers of the same file never share a temporary.
        let temporary = self.dir.join(format!(".{}.tmp", Uuid::new_v4()));
        let written = async {
            let mut file = tokio::fs::File::create(&temporary).await?;
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
        Ok(Delivered {
            response: path.display().to_string(),
        })
    }
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
        assert_eq!(delivered.response, files[0].display().to_string());
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
