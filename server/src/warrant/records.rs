//! The normal archive as the warrant crate sees it: a [`NormalRecords`]
//! implementation over the archive's read-only [`ArchiveReader`], and nothing
//! else. This is the only data the desk hands to a disclosure.

use sotto_warrant::{ArchivedRecord, NormalRecords, Window};

use crate::RelayError;
use crate::archive::ArchiveReader;

impl NormalRecords for ArchiveReader {
    type Error = RelayError;

    fn records_of(&self, user: &str, window: &Window) -> Result<Vec<ArchivedRecord>, RelayError> {
        Ok(self
            .records_of(user, window.from_ms(), window.until_ms())?
            .into_iter()
            .map(|r| ArchivedRecord {
                id: r.id,
                conversation: r.conversation,
                from: r.from,
                participants: r.participants,
                sent_at: r.sent_at,
                text: r.text,
            })
            .collect())
    }
}
