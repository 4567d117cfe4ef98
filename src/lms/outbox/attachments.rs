//! Attachment files beside the outbox database: each copied under a name of our own,
//! hashed as it is copied, and fsynced before its record is committed.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::OutboxError;

/// Largest attachment accepted (students' photos and PDFs).
pub const MAX_ATTACHMENT_BYTES: u64 = 50 * 1024 * 1024;

/// A file to attach, already on disk (an upload's temporary file) or in memory.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub file_name: String,
    pub content_type: String,
    pub content: AttachmentContent,
}

#[derive(Debug, Clone)]
pub enum AttachmentContent {
    Bytes(bytes::Bytes),
    File(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    /// Absolute path of the stored copy.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Attachment {
    /// Read the stored copy back, refusing it if it no longer matches its hash.
    pub async fn read_verified(&self) -> Result<bytes::Bytes, String> {
        let data = tokio::fs::read(&self.path)
            .await
            .map_err(|e| format!("attachment {:?} unreadable: {e}", self.file_name))?;
        let hash = hex(&Sha256::digest(&data));
        if data.len() as u64 != self.size || hash != self.sha256 {
            return Err(format!(
                "attachment {:?} is corrupt: {} bytes with SHA-256 {hash}, expected {} bytes with {}",
                self.file_name,
                data.len(),
                self.size,
                self.sha256
            ));
        }
        Ok(data.into())
    }
}

/// Blocking: copy each attachment into `dir`, hashing as it goes, and fsync it all.
pub(super) fn store_files(
    dir: &Path,
    attachments: Vec<NewAttachment>,
) -> Result<Vec<Attachment>, OutboxError> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(dir)?;
    let mut stored = Vec::new();
    for (n, a) in attachments.into_iter().enumerate() {
        let bad = |message: String| OutboxError::Attachment {
            name: a.file_name.clone(),
            message,
        };
        if a.file_name.is_empty()
            || a.file_name.len() > 255
            || a.file_name.chars().any(char::is_control)
        {
            return Err(bad("a file name of 1-255 characters is needed".into()));
        }
        if !a.content_type.contains('/') || a.content_type.len() > 100 {
            return Err(bad(format!(
                "{:?} is not a media type like application/pdf",
                a.content_type
            )));
        }
        // Our own name on disk: the student's file name is only ever data.
        let safe: String = a
            .file_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let path = dir.join(format!("{n}-{safe}"));
        let mut out = std::fs::File::create(&path)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut write = |chunk: &[u8]| -> Result<(), OutboxError> {
            size += chunk.len() as u64;
            if size > MAX_ATTACHMENT_BYTES {
                return Err(bad(format!(
                    "larger than the {} MB limit",
                    MAX_ATTACHMENT_BYTES / (1024 * 1024)
                )));
            }
            hasher.update(chunk);
            out.write_all(chunk)?;
            Ok(())
        };
        match &a.content {
            AttachmentContent::Bytes(b) => write(b)?,
            AttachmentContent::File(src) => {
                let mut input = std::fs::File::open(src)
                    .map_err(|e| bad(format!("cannot read {}: {e}", src.display())))?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = input.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    write(&buf[..n])?;
                }
            }
        }
        out.sync_all()?;
        stored.push(Attachment {
            file_name: a.file_name,
            content_type: a.content_type,
            path,
            size,
            sha256: hex(&hasher.finalize()),
        });
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(stored)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
