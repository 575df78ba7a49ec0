//! Presence across the cluster: each node's counts in Redis, joins and leaves decided once for
//! the whole cluster, published to every node, and a dead node's connections taken away.
//!
//! Owns the presence keys (under the key prefix):
//! - `presence:nodes`: a sorted set of node → time of its last presence report (Redis's clock);
//! - `presence:node:{node}`: that node's counts (`c\n{channel}\n{user}`) and the users it has
//!   announced (`a\n{channel}\n{user}`), so its share can be taken back when it dies;
//! - `presence:ch:{channel}`: the channel's connections per user across the cluster (the answer
//!   of the presence API, one `HGETALL`);
//! - `presence:an:{channel}`: per user, how many nodes announce them: the cluster's `join` is
//!   the first node's announcement, its `leave` the last one's end;
//! - `presence:events`: the Pub/Sub channel every node listens on for joins and leaves to deliver.
//!
//! One atomic script per tick per node reports what changed (absolute counts, so a retry or a full
//! resync is harmless), refreshes the node's heartbeat, and takes back the share of any node
//! silent for longer than the node timeout, publishing the leaves that follows. It never touches
//! the event log: joins and leaves are kept in no history.

use super::{ClusterError, ClusterLog, Redis, Request};
use crate::{
    channel::ChannelName,
    hub::Shared,
    presence::{Count, Drained, Presence, PresenceChange, PresenceUser},
};
use futures_util::StreamExt;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Weak,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Most dead nodes one report takes back (the next report takes the rest).
const REAP_PER_REPORT_MAX: usize = 8;
/// Wait before listening again after the Pub/Sub connection is lost.
const LISTEN_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Applies one node's report, beats its heart and takes back dead nodes' shares.
/// ARGV: prefix, node, full (`1`: fields not reported are zero), node timeout (ms), dead nodes
/// taken back at most, then (channel, user token, connections, announced) per count; a user
/// token is `u:` and the user, or the empty string for anonymous connections.
/// Returns the JSON array of changes it published (or the empty string), and 1 when the node
/// was taken for dead and must report everything next time.
const REPORT_SCRIPT: &str = r#"
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nodes = prefix .. ':presence:nodes'
local events = {}
local function node_key(node) return prefix .. ':presence:node:' .. node end
local function totals(ch) return prefix .. ':presence:ch:' .. ch end
local function announced(ch) return prefix .. ':presence:an:' .. ch end

local function apply(nk, seen, ch, token, count, ann)
  local cf = 'c\n' .. ch .. '\n' .. token
  local af = 'a\n' .. ch .. '\n' .. token
  seen[cf] = true
  seen[af] = true
  local old = tonumber(redis.call('HGET', nk, cf) or '0')
  local delta = count - old
  if delta ~= 0 then
    if count > 0 then redis.call('HSET', nk, cf, count) else redis.call('HDEL', nk, cf) end
    local total = redis.call('HINCRBY', totals(ch), token, delta)
    if total <= 0 then redis.call('HDEL', totals(ch), token) end
  end
  if token ~= '' then
    local was = redis.call('HEXISTS', nk, af) == 1
    if ann and not was then
      redis.call('HSET', nk, af, '1')
      if redis.call('HINCRBY', announced(ch), token, 1) == 1 then
        table.insert(events, {ch, token, 'join'})
      end
    elseif was and not ann then
      redis.call('HDEL', nk, af)
      if redis.call('HINCRBY', announced(ch), token, -1) <= 0 then
        redis.call('HDEL', announced(ch), token)
        table.insert(events, {ch, token, 'leave'})
      end
    end
  end
end

-- Every field of the node not in `seen` is zero now.
local function zero_rest(nk, seen)
  local fields = redis.call('HKEYS', nk)
  for _, f in ipairs(fields) do
    if not seen[f] then
      local rest = string.sub(f, 3)
      local nl = string.find(rest, '\n', 1, true)
      if nl then
        apply(nk, seen, string.sub(rest, 1, nl - 1), string.sub(rest, nl + 1), 0, false)
      end
    end
  end
end

local node = ARGV[2]
local nk = node_key(node)
-- A node missing from the set was taken for dead (or is new): it must report everything.
local resync = 0
if not redis.call('ZSCORE', nodes, node) and ARGV[3] ~= '1' then resync = 1 end
local seen = {}
local i = 6
while i + 3 <= #ARGV do
  apply(nk, seen, ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3] == '1')
  i = i + 4
end
if ARGV[3] == '1' then zero_rest(nk, seen) end
redis.call('ZADD', nodes, now, node)

local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now - tonumber(ARGV[4]),
  'LIMIT', 0, tonumber(ARGV[5]))
for _, d in ipairs(dead) do
  if d ~= node then
    zero_rest(node_key(d), {})
    redis.call('DEL', node_key(d))
    redis.call('ZREM', nodes, d)
  end
end

if #events == 0 then return {'', resync} end
local out = {}
for _, e in ipairs(events) do
  local n = 0
  if e[3] == 'join' then n = tonumber(redis.call('HGET', totals(e[1]), e[2]) or '0') end
  table.insert(out, {channel = e[1], user = string.sub(e[2], 3), kind = e[3], connections = n})
end
local payload = cjson.encode(out)
redis.call('PUBLISH', prefix .. ':presence:events', payload)
return {payload, resync}
"#;

/// This node's side of cluster presence.
#[derive(Debug)]
pub(super) struct ClusterPresence {
    is_enabled: bool,
    node_timeout: Duration,
    /// The next report must carry every count (at start: it also clears what a previous run
    /// of this node id left; after a failed report).
    needs_full: AtomicBool,
}

/// The token a user has in the presence keys.
fn token_of(count: &Count) -> String {
    match &count.user {
        Some(user) => format!("u:{user}"),
        None => String::new(),
    }
}

impl ClusterPresence {
    pub(super) fn new(is_enabled: bool, node_timeout: Duration) -> Self {
        Self {
            is_enabled,
            node_timeout,
            needs_full: AtomicBool::new(true),
        }
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.is_enabled
    }

    pub(super) fn take_needs_full(&self) -> bool {
        self.needs_full.swap(false, Ordering::Relaxed)
    }

    /// Reports one tick of this node; returns the changes the report produced.
    pub(super) async fn report(
        &self,
        redis: &Redis,
        node: &str,
        drained: &Drained,
    ) -> Result<Vec<PresenceChange>, ClusterError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(REPORT_SCRIPT)
            .arg(0)
            .arg(&redis.key_prefix)
            .arg(node)
            .arg(if drained.is_full { "1" } else { "0" })
            .arg(ClusterLog::ms(self.node_timeout))
            .arg(REAP_PER_REPORT_MAX);
        for count in &drained.counts {
            eval.arg(count.channel.as_str())
                .arg(token_of(count))
                .arg(count.connections)
                .arg(if count.is_announced { "1" } else { "0" });
        }
        let answer: Result<(String, i64), ClusterError> = redis.run(&Request::Cmd(eval)).await;
        let (published, resync) = match answer {
            Ok(answer) => answer,
            Err(err) => {
                self.needs_full.store(true, Ordering::Relaxed);
                return Err(err);
            }
        };
        if resync == 1 {
            tracing::warn!(
                "this node was taken for dead by the cluster's presence; reporting again"
            );
            self.needs_full.store(true, Ordering::Relaxed);
        }
        if published.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&published)
            .map_err(|_| ClusterError::UnexpectedReply("a presence report".to_owned()))
    }
}

/// Who is on `channel` across the cluster (live nodes, and dead ones not yet taken back), and
/// the users announced there whose leave is held back.
pub(super) async fn presence_of(
    redis: &Redis,
    channel: &ChannelName,
) -> Result<Presence, ClusterError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL")
        .arg(redis.key(&format!("presence:ch:{channel}")))
        .cmd("HKEYS")
        .arg(redis.key(&format!("presence:an:{channel}")));
    let (fields, announced): (Vec<(String, i64)>, Vec<String>) =
        redis.run(&Request::Pipe(pipe)).await?;
    let mut presence = Presence {
        channel: channel.clone(),
        users: Vec::new(),
        anonymous: 0,
        connections: 0,
    };
    for (token, count) in fields {
        let Ok(count) = u64::try_from(count) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        presence.connections += count;
        match token.strip_prefix("u:") {
            Some(user) => presence.users.push(PresenceUser {
                user: user.to_owned(),
                connections: count,
            }),
            None => presence.anonymous += count,
        }
    }
    // A user whose leave is held back is still listed, with no connection.
    for token in announced {
        if let Some(user) = token.strip_prefix("u:") {
            if !presence.users.iter().any(|u| u.user == user) {
                presence.users.push(PresenceUser {
                    user: user.to_owned(),
                    connections: 0,
                });
            }
        }
    }
    presence.users.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(presence)
}

/// Listens to the cluster's joins and leaves and delivers them to this node's subscribers,
/// listening again after a lost connection (what was published meanwhile is not delivered: the
/// presence API still answers right).
pub(super) async fn listen_loop(
    log: std::sync::Arc<ClusterLog>,
    hub: Weak<Shared>,
    shutdown: CancellationToken,
) {
    let channel = log.redis.key("presence:events");
    loop {
        let listened = async {
            let mut pubsub = log
                .redis
                .client
                .get_async_pubsub()
                .await
                .map_err(ClusterError::Unavailable)?;
            pubsub
                .subscribe(&channel)
                .await
                .map_err(ClusterError::Unavailable)?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Ok(changes) = serde_json::from_str::<Vec<PresenceChange>>(&payload) else {
                    tracing::debug!("ignored a presence message that is not Herald's");
                    continue;
                };
                let Some(shared) = hub.upgrade() else {
                    return Ok(());
                };
                shared.deliver_presence(&changes);
            }
            Err::<(), _>(ClusterError::UnexpectedReply(
                "the presence subscription ended".to_owned(),
            ))
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listened => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "presence listener lost redis");
                } else {
                    return;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LISTEN_RETRY_DELAY) => {}
        }
    }
}
