//! The in-memory log: history is the whole log; nothing to install, nothing survives a restart.
//!
//! Owns nothing but the rule that an event is recorded as soon as history holds it. It never
//! writes anywhere and never waits.

use crate::{
    hub::{Apply, PublishError, Published, Shared},
    log::{Entry, Log, LogFuture},
};

/// The default log.
#[derive(Debug, Default)]
pub(crate) struct MemoryLog;

impl Log for MemoryLog {
    fn append<'a>(
        &'a self,
        hub: &'a Shared,
        entry: Entry,
    ) -> LogFuture<'a, Result<Published, PublishError>> {
        Box::pin(std::future::ready(hub.apply(entry, Apply::Publish)))
    }
}
