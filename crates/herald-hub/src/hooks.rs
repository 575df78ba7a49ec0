//! Connect and disconnect hooks: application code told when a connection opens or ends; and the
//! channel watcher told when a channel gains its first subscriber or loses its last.
//!
//! Owns the registered hooks and the rule for calling them: outside the hub's state lock, in the
//! order they were added, with a [`ClientInfo`] built only when some hook wants it. The
//! [`ChannelWatcher`] is the exception: `fanout` calls it under the lock, so it sees changes in the
//! order they happen, and it must only queue. It never decides when a connection starts or ends;
//! [`crate::Hub`] does.

use crate::{hub::ClientInfo, ChannelName};
use std::{
    fmt,
    sync::{Arc, RwLock},
};

/// One hook, as [`crate::Hub::on_connect`] and [`crate::Hub::on_disconnect`] take it.
type Hook = Arc<dyn Fn(&ClientInfo) + Send + Sync>;

/// Told when a channel's occupancy on this node changes (webhooks listen here).
///
/// Called under the hub's state lock, in the order the changes happen, so an implementation
/// never blocks, never allocates more than a small message, and never calls the hub: it queues
/// (`try_send`) and returns.
pub(crate) trait ChannelWatcher: Send + Sync + fmt::Debug {
    /// `channel` gained its first subscriber on this node.
    fn occupied(&self, channel: &ChannelName);
    /// `channel` lost its last subscriber on this node.
    fn vacated(&self, channel: &ChannelName);
    /// Users joined or left `channel` (presence); may be called with or without the lock.
    fn presence_changed(&self, channel: &ChannelName, joined: &[&str], left: &[&str]);
}

/// The hooks of one hub.
#[derive(Default)]
pub(crate) struct Hooks {
    on_connect: RwLock<Vec<Hook>>,
    on_disconnect: RwLock<Vec<Hook>>,
}

impl Hooks {
    pub(crate) fn add_connect(&self, hook: Hook) {
        write(&self.on_connect).push(hook);
    }

    pub(crate) fn add_disconnect(&self, hook: Hook) {
        write(&self.on_disconnect).push(hook);
    }

    /// Calls every connect hook with the connection `info` describes.
    pub(crate) fn connected(&self, info: impl FnOnce() -> ClientInfo) {
        call(&self.on_connect, info);
    }

    /// Calls every disconnect hook with the connection `info` describes.
    pub(crate) fn disconnected(&self, info: impl FnOnce() -> ClientInfo) {
        call(&self.on_disconnect, info);
    }
}

/// Copies the hooks out, then calls them with no lock held, so a hook may add hooks or call the
/// hub. With no hook, `info` is never built.
fn call(hooks: &RwLock<Vec<Hook>>, info: impl FnOnce() -> ClientInfo) {
    let hooks: Vec<Hook> = {
        let hooks = hooks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if hooks.is_empty() {
            return;
        }
        hooks.clone()
    };
    let info = info();
    for hook in &hooks {
        hook(&info);
    }
}

fn write(hooks: &RwLock<Vec<Hook>>) -> std::sync::RwLockWriteGuard<'_, Vec<Hook>> {
    // A push is the only write: a poisoned list is still a valid list.
    hooks
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |hooks: &RwLock<Vec<Hook>>| {
            hooks
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len()
        };
        f.debug_struct("Hooks")
            .field("on_connect", &count(&self.on_connect))
            .field("on_disconnect", &count(&self.on_disconnect))
            .finish()
    }
}
