//! [`TimerWheelActor`]: the leader's clock. The state machine only stores timers; this actor
//! proposes `Command::FireTimer` when one comes due, so every replica fires it at the same log
//! position.
//!
//! Only a window of the nearest pending timers is kept in memory ([`Window`]): everything up to
//! the *horizon* (the last key of the last full page read from the store) is in memory, anything
//! later is read from the store when the window drains. A million pending timers therefore cost
//! disk, not memory. Firing twice is harmless (the state machine ignores a timer that is no longer
//! stored), so reloads and retries never need to know what is still in flight.
//!
//! A wheel belongs to one [`crate::leader::Leader`]: it starts after the leader caught up (so its
//! first load sees every timer registered before), and every timer registered later reaches it
//! as an `Effect::RegisterTimer`, whoever proposed the entry.

use crate::actor::PartitionActor;
use crate::effects::now_ms;
use crate::{ProposeError, ProposeInternal};
use actix::prelude::*;
use holdfast_raft_store::WeakStateMachine;
use holdfast_types::{Command, PartitionId, TimerKey};
use std::collections::BTreeSet;
use std::time::Duration;

/// Most timers kept in memory after a load; the store is paged in windows of this many keys.
const WINDOW: usize = 1024;
/// Most `FireTimer` commands in one proposal.
const FIRE_BATCH: usize = 512;
/// Most proposals of this wheel waiting for the partition at once.
const MAX_IN_FLIGHT: usize = 4;
/// How long the wheel waits after a failed read or an unknown outcome before trying again.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Where the in-memory window ends relative to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Horizon {
    /// Nothing is loaded yet.
    Unloaded,
    /// Every pending timer up to and including this key is in memory; later ones may be stored
    /// only.
    At(TimerKey),
    /// Every pending timer is in memory.
    Everything,
}

/// The in-memory part of the pending timers: the nearest ones, in fire order. Pure bookkeeping,
/// so the paging rules can be tested without an actor or a store.
#[derive(Debug)]
pub(crate) struct Window {
    capacity: usize,
    low_water: usize,
    pending: BTreeSet<TimerKey>,
    horizon: Horizon,
    /// A page is being read off the actor's thread (see [`Window::begin_load`]).
    loading: Option<Late>,
}

/// Timers registered beyond the horizon while a page was being read: the read may have missed
/// them, so they are taken in again once the page is in. Bounded: past `capacity` the page is
/// discarded and read again instead.
#[derive(Debug, Default)]
struct Late {
    timers: Vec<TimerKey>,
    overflowed: bool,
}

impl Window {
    /// An empty window that pages the store `capacity` keys at a time.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            low_water: capacity / 4,
            pending: BTreeSet::new(),
            horizon: Horizon::Unloaded,
            loading: None,
        }
    }

    /// How many keys one load should ask the store for.
    pub(crate) fn page_size(&self) -> usize {
        self.capacity
    }

    /// Whether the next page should be read from the store, and after which key (`Some(None)`:
    /// from the start). Asked for at start, and again whenever the window drains to its low-water
    /// mark while timers remain beyond the horizon.
    pub(crate) fn wants_load(&self) -> Option<Option<TimerKey>> {
        if self.loading.is_some() {
            return None;
        }
        match self.horizon {
            Horizon::Unloaded => Some(None),
            Horizon::At(last) if self.pending.len() <= self.low_water => Some(Some(last)),
            Horizon::At(_) | Horizon::Everything => None,
        }
    }

    /// Starts reading the next page when one is wanted: returns the key to read after (as
    /// [`Window::wants_load`]) and remembers registrations until [`Window::load`] or
    /// [`Window::abort_load`].
    pub(crate) fn begin_load(&mut self) -> Option<Option<TimerKey>> {
        let after = self.wants_load()?;
        self.loading = Some(Late::default());
        Some(after)
    }

    /// The read begun last failed: the next one starts from the same horizon.
    pub(crate) fn abort_load(&mut self) {
        self.loading = None;
    }

    /// Takes in a page read from the store after the current horizon: a full page moves the
    /// horizon to its last key, a short one means the store holds nothing later. Timers
    /// registered while it was read are taken in after it; if too many were, the page is
    /// dropped and read again.
    pub(crate) fn load(&mut self, page: Vec<TimerKey>) {
        let late = self.loading.take().unwrap_or_default();
        if late.overflowed {
            return;
        }
        self.apply_page(page);
        for timer in late.timers {
            self.register(timer);
        }
    }

    fn apply_page(&mut self, page: Vec<TimerKey>) {
        let full = page.len() >= self.capacity;
        let last = page.last().copied();
        self.pending.extend(page);
        self.horizon = match last {
            Some(last) if full => Horizon::At(last),
            _ => Horizon::Everything,
        };
        self.trim();
    }

    /// A timer registered after the window was loaded: kept if it falls inside the window (true),
    /// otherwise left to the store until its page is loaded (false).
    pub(crate) fn register(&mut self, timer: TimerKey) -> bool {
        let inside = match self.horizon {
            // The first load reads it from the store.
            Horizon::Unloaded => false,
            Horizon::At(last) => timer <= last,
            Horizon::Everything => true,
        };
        if inside {
            self.pending.insert(timer);
            self.trim();
        } else if let Some(late) = &mut self.loading {
            if late.timers.len() < self.capacity {
                late.timers.push(timer);
            } else {
                late.overflowed = true;
            }
        }
        inside && self.pending.contains(&timer)
    }

    /// Puts back timers whose firing could not be proposed.
    pub(crate) fn restore(&mut self, timers: impl IntoIterator<Item = TimerKey>) {
        for timer in timers {
            self.register(timer);
        }
    }

    /// Removes and returns, earliest first, up to `max` timers due at `now_ms`.
    pub(crate) fn take_due(&mut self, now_ms: u64, max: usize) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.pending.first() {
                Some(first) if first.fire_at_ms <= now_ms => {
                    if let Some(first) = self.pending.pop_first() {
                        due.push(first);
                    }
                }
                _ => break,
            }
        }
        due
    }

    /// When the earliest timer in memory fires, in Unix milliseconds.
    pub(crate) fn next_wake(&self) -> Option<u64> {
        self.pending.first().map(|first| first.fire_at_ms)
    }

    /// How many timers are in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Keeps memory bounded when many timers are registered inside the window: the latest ones
    /// are dropped (they are stored) and the horizon moves back to the last one kept.
    fn trim(&mut self) {
        if self.pending.len() <= self.capacity.saturating_mul(2) {
            return;
        }
        while self.pending.len() > self.capacity {
            self.pending.pop_last();
        }
        if let Some(last) = self.pending.last() {
            self.horizon = Horizon::At(*last);
        }
    }
}

/// A timer the partition just registered (from an `Effect::RegisterTimer`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Register(pub(crate) TimerKey);

/// The partition no longer leads: fire nothing more.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Halt;

/// Proposes `FireTimer` for one partition's timers as they come due, while that partition leads.
pub(crate) struct TimerWheelActor {
    partition: PartitionId,
    owner: Addr<PartitionActor>,
    /// Weak, so a wheel that outlives its raft group never keeps the partition's files open.
    state: WeakStateMachine,
    window: Window,
    /// The armed wake-up and the Unix millisecond it is for.
    wake: Option<(u64, SpawnHandle)>,
    /// Proposals sent and not answered yet.
    in_flight: usize,
    /// Waiting out [`RETRY_DELAY`]; a scheduled retry resumes the wheel.
    paused: bool,
    halted: bool,
}

impl TimerWheelActor {
    /// A wheel for `partition`, reading its timers through `state` and proposing to `owner`.
    pub(crate) fn new(
        partition: PartitionId,
        owner: Addr<PartitionActor>,
        state: WeakStateMachine,
    ) -> Self {
        Self {
            partition,
            owner,
            state,
            window: Window::new(WINDOW),
            wake: None,
            in_flight: 0,
            paused: false,
            halted: false,
        }
    }

    /// Reads the next page on a blocking thread when the window asks for one; the answer pumps
    /// again. Timers already in memory keep firing meanwhile.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        let Some(after) = self.window.begin_load() else {
            return;
        };
        let Some(state) = self.state.upgrade() else {
            // The partition closed its state (shutdown or restart): this wheel is obsolete.
            self.halt(ctx);
            return;
        };
        let limit = self.window.page_size();
        let read = tokio::task::spawn_blocking(move || state.timers_after(after.as_ref(), limit));
        ctx.spawn(read.into_actor(self).map(|read, act, ctx| {
            if act.halted {
                return;
            }
            match read {
                Ok(Ok(page)) => {
                    act.window.load(page);
                    act.pump(ctx);
                }
                Ok(Err(e)) => {
                    tracing::error!(partition = %act.partition, error = %e, "cannot read pending timers");
                    act.window.abort_load();
                    act.back_off(ctx);
                }
                Err(e) => {
                    tracing::error!(partition = %act.partition, error = %e, "timer read task failed");
                    act.window.abort_load();
                    act.back_off(ctx);
                }
            }
        }));
    }

    /// Proposes every due timer (within the in-flight limit), then sleeps until the next one.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.halted || self.paused {
            return;
        }
        loop {
            self.refill(ctx);
            if self.halted {
                return;
            }
            if self.in_flight >= MAX_IN_FLIGHT {
                break;
            }
            let due = self.window.take_due(now_ms(), FIRE_BATCH);
            if due.is_empty() {
                break;
            }
            self.propose(due, ctx);
        }
        self.arm(ctx);
    }

    /// Arms the single wake-up for the earliest timer in memory, replacing a later one. A timer
    /// already due is left to the answer of a proposal in flight (the wheel is saturated).
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if self.halted || self.paused {
            return;
        }
        let Some(next) = self.window.next_wake() else {
            self.disarm(ctx);
            return;
        };
        let now = now_ms();
        if next <= now && self.in_flight >= MAX_IN_FLIGHT {
            self.disarm(ctx);
            return;
        }
        if let Some((armed, _)) = self.wake
            && armed <= next
        {
            return;
        }
        self.disarm(ctx);
        let delay = Duration::from_millis(next.saturating_sub(now));
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.pump(ctx);
        });
        self.wake = Some((next, handle));
    }

    fn disarm(&mut self, ctx: &mut Context<Self>) {
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
    }

    /// Stops proposing for [`RETRY_DELAY`], then resumes.
    fn back_off(&mut self, ctx: &mut Context<Self>) {
        if self.paused || self.halted {
            return;
        }
        self.disarm(ctx);
        self.paused = true;
        ctx.run_later(RETRY_DELAY, |act, ctx| {
            act.paused = false;
            act.pump(ctx);
        });
    }

    fn propose(&mut self, due: Vec<TimerKey>, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let at_ms = now_ms();
        let commands = due
            .iter()
            .map(|timer| Command::FireTimer {
                timer: *timer,
                at_ms,
            })
            .collect();
        let owner = self.owner.clone();
        let sent = async move { owner.send(ProposeInternal(commands)).await };
        ctx.spawn(sent.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = act.in_flight.saturating_sub(1);
            if act.halted {
                return;
            }
            match result {
                Ok(Ok(_)) => act.pump(ctx),
                // Not written (or unknown, for a storage failure): firing again is harmless.
                Ok(Err(
                    ProposeError::Overloaded(_)
                    | ProposeError::Storage { .. }
                    | ProposeError::Unavailable { .. }
                    | ProposeError::Unknown { .. }
                    | ProposeError::LostLeadership(_),
                )) => {
                    act.window.restore(due);
                    act.back_off(ctx);
                }
                Ok(Err(e @ (ProposeError::NotLeader { .. } | ProposeError::ShuttingDown(_)))) => {
                    tracing::debug!(partition = %act.partition, error = %e, "timer wheel stops");
                    act.halt(ctx);
                }
                Err(e) => {
                    tracing::debug!(partition = %act.partition, error = %e, "partition gone; timer wheel stops");
                    act.halt(ctx);
                }
            }
        }));
    }

    fn halt(&mut self, ctx: &mut Context<Self>) {
        self.halted = true;
        self.disarm(ctx);
        ctx.stop();
    }
}

impl Actor for TimerWheelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Timers that came due while no node led the partition are due now: they fire at once.
        self.pump(ctx);
    }
}

impl Handler<Register> for TimerWheelActor {
    type Result = ();

    fn handle(&mut self, Register(timer): Register, ctx: &mut Context<Self>) {
        if self.halted {
            return;
        }
        if self.window.register(timer) {
            if timer.fire_at_ms <= now_ms() {
                self.pump(ctx);
            } else {
                self.arm(ctx);
            }
        }
    }
}

impl Handler<Halt> for TimerWheelActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        self.halt(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_types::{EntryIndex, InvocationId, Timer};

    fn key(at: u64, nonce: u128) -> TimerKey {
        TimerKey::new(
            at,
            Timer::Sleep {
                id: InvocationId {
                    partition_key: 1,
                    nonce,
                },
                index: EntryIndex(1),
            },
        )
    }

    /// A sorted "store" of timers at 10, 20, ..., `n * 10`.
    fn store(n: u64) -> Vec<TimerKey> {
        (1..=n).map(|i| key(i * 10, u128::from(i))).collect()
    }

    /// What `StateMachine::timers_after` answers for `store`.
    fn page(store: &[TimerKey], after: Option<TimerKey>, limit: usize) -> Vec<TimerKey> {
        store
            .iter()
            .filter(|k| after.is_none_or(|a| **k > a))
            .take(limit)
            .copied()
            .collect()
    }

    fn refill(window: &mut Window, store: &[TimerKey]) -> usize {
        let mut loads = 0;
        while let Some(after) = window.begin_load() {
            window.load(page(store, after, window.page_size()));
            loads += 1;
        }
        loads
    }

    #[test]
    fn a_timer_registered_while_its_page_is_read_is_not_lost() {
        let mut store = store(20);
        let mut window = Window::new(4);
        refill(&mut window, &store);
        // The window drains to its low-water mark and asks for the page after 40.
        assert_eq!(window.take_due(40, 10).len(), 4);
        let after = window.begin_load().expect("a page is wanted");
        assert_eq!(window.wants_load(), None, "one read at a time");
        let read = page(&store, after, window.page_size());
        // Stored after the read took its snapshot: beyond the old horizon, inside the new one.
        let late = key(55, 1000);
        store.push(late);
        store.sort();
        assert!(!window.register(late));
        window.load(read);
        assert_eq!(window.take_due(60, 10).len(), 3, "50, 55 and 60");
    }

    #[test]
    fn too_many_registrations_during_a_read_read_the_page_again() {
        let mut store = store(20);
        let mut window = Window::new(4);
        refill(&mut window, &store);
        window.take_due(40, 10);
        let after = window.begin_load().expect("a page is wanted");
        let read = page(&store, after, window.page_size());
        for n in 0..5 {
            let late = key(51 + n, 2000 + u128::from(n));
            store.push(late);
            window.register(late);
        }
        store.sort();
        window.load(read);
        assert_eq!(window.len(), 0, "the stale page was dropped");
        refill(&mut window, &store);
        let due: Vec<u64> = window
            .take_due(60, 10)
            .iter()
            .map(|k| k.fire_at_ms)
            .collect();
        assert_eq!(
            due,
            [50, 51, 52, 53],
            "the window holds the first page after 40 again"
        );
    }

    #[test]
    fn a_failed_read_is_asked_for_again() {
        let mut window = Window::new(4);
        assert_eq!(window.begin_load(), Some(None));
        window.abort_load();
        assert_eq!(window.wants_load(), Some(None));
    }

    #[test]
    fn a_short_first_page_loads_everything() {
        let store = store(3);
        let mut window = Window::new(8);
        assert_eq!(window.wants_load(), Some(None));
        assert_eq!(refill(&mut window, &store), 1);
        assert_eq!(window.len(), 3);
        assert_eq!(window.wants_load(), None);
        // With everything loaded, any later timer belongs in memory.
        assert!(window.register(key(1_000_000, 99)));
        assert_eq!(window.len(), 4);
    }

    #[test]
    fn registering_respects_the_horizon() {
        let store = store(20);
        let mut window = Window::new(4);
        refill(&mut window, &store);
        assert_eq!(window.len(), 4);
        // The horizon is the fourth timer, at 40.
        assert!(window.register(key(5, 100)));
        assert!(window.register(key(40, 0)));
        assert!(!window.register(key(41, 101)));
        assert!(!window.register(key(400, 102)));
        assert_eq!(window.len(), 6);
    }

    #[test]
    fn registering_before_the_first_load_is_left_to_the_store() {
        let mut window = Window::new(4);
        assert!(!window.register(key(10, 1)));
        assert_eq!(window.len(), 0);
        assert_eq!(window.wants_load(), Some(None));
    }

    #[test]
    fn due_timers_come_out_earliest_first_and_bounded() {
        let mut window = Window::new(16);
        window.load(vec![]);
        for k in [key(30, 3), key(10, 1), key(20, 2), key(10, 0), key(50, 5)] {
            assert!(window.register(k));
        }
        assert_eq!(window.next_wake(), Some(10));
        assert_eq!(window.take_due(5, 10), vec![]);
        assert_eq!(window.take_due(20, 2), vec![key(10, 0), key(10, 1)]);
        assert_eq!(window.take_due(30, 10), vec![key(20, 2), key(30, 3)]);
        assert_eq!(window.next_wake(), Some(50));
        assert_eq!(window.take_due(u64::MAX, 10), vec![key(50, 5)]);
        assert_eq!(window.next_wake(), None);
    }

    #[test]
    fn draining_reloads_the_next_window_and_fires_every_timer_once() {
        let store = store(50);
        let mut window = Window::new(8);
        let mut fired = Vec::new();
        let mut loads = refill(&mut window, &store);
        loop {
            let due = window.take_due(u64::MAX, 3);
            if due.is_empty() {
                break;
            }
            fired.extend(due);
            loads += refill(&mut window, &store);
            assert!(window.len() <= 8 + 8 / 4, "window grew to {}", window.len());
        }
        assert_eq!(fired, store);
        assert!(loads >= 50 / 8);
        assert_eq!(window.wants_load(), None);
    }

    #[test]
    fn the_window_is_loaded_again_only_at_low_water() {
        let store = store(20);
        let mut window = Window::new(8);
        refill(&mut window, &store);
        window.take_due(50, usize::MAX);
        assert_eq!(window.len(), 3);
        assert_eq!(window.wants_load(), None);
        window.take_due(60, usize::MAX);
        assert_eq!(window.wants_load(), Some(Some(key(80, 8))));
        refill(&mut window, &store);
        assert_eq!(window.len(), 2 + 8);
        assert_eq!(window.next_wake(), Some(70));
    }

    #[test]
    fn duplicates_are_kept_once() {
        let store = store(4);
        let mut window = Window::new(8);
        refill(&mut window, &store);
        assert!(window.register(key(20, 2)));
        window.restore([key(10, 1), key(10, 1)]);
        assert_eq!(window.len(), 4);
        assert_eq!(window.take_due(20, 10), vec![key(10, 1), key(20, 2)]);
    }

    #[test]
    fn restored_timers_fire_again() {
        let mut window = Window::new(8);
        window.load(vec![key(10, 1), key(20, 2)]);
        let due = window.take_due(100, 10);
        assert_eq!(window.len(), 0);
        window.restore(due.clone());
        assert_eq!(window.take_due(100, 10), due);
    }

    #[test]
    fn registrations_inside_the_window_cannot_grow_it_unbounded() {
        let store = store(4);
        let mut window = Window::new(4);
        refill(&mut window, &store);
        // A full page: the horizon is the last stored timer, and the window is above low water.
        assert_eq!(window.wants_load(), None);
        for i in 0..100u64 {
            window.register(key(i, 1_000 + u128::from(i)));
        }
        assert!(window.len() <= 8);
        // The dropped ones are stored: paging brings them back in order.
        let mut all: Vec<TimerKey> = store
            .iter()
            .copied()
            .chain((0..100u64).map(|i| key(i, 1_000 + u128::from(i))))
            .collect();
        all.sort();
        let mut fired = Vec::new();
        loop {
            refill(&mut window, &all);
            let due = window.take_due(u64::MAX, 5);
            if due.is_empty() {
                break;
            }
            fired.extend(due);
        }
        assert_eq!(fired, all);
    }

    mod wheel {
        //! The wheel inside a real single-node partition: delayed invocations register `Start`
        //! timers, and the wheel fires them (nothing is deployed, so the started attempts only
        //! fail; with one attempt allowed they pause, which registers no retry timer).

        use crate::effects::now_ms;
        use crate::{GetStatus, PartitionActor, Propose, Settings, Shutdown};
        use actix::{Actor, Addr};
        use holdfast_protocol::Payload;
        use holdfast_raft_group::Replication;
        use holdfast_types::{
            Command, HandlerKind, InvocationId, InvocationRequest, NodeId, PartitionId, Source,
            Target,
        };
        use std::path::Path;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        fn settings(dir: &Path) -> Settings {
            let raft = openraft::Config {
                election_timeout_min: 150,
                election_timeout_max: 300,
                heartbeat_interval: 50,
                ..Default::default()
            }
            .validate()
            .expect("raft config");
            Settings {
                partition: PartitionId(0),
                dir: dir.to_path_buf(),
                log: holdfast_raft_store::SharedLog::open(&dir.join("raft-log.redb"))
                    .expect("open the raft log"),
                state_cache_bytes: holdfast_raft_store::STATE_CACHE_BYTES,
                replication: Replication::sole(
                    NodeId(1),
                    holdfast_cluster::GroupId::Partition(0),
                    Arc::new(raft),
                ),
                max_batch_commands: 1024,
                max_batch_bytes: 1 << 20,
                max_queued: 1 << 16,
                proposal_deadline: Duration::from_secs(5),
                max_message_bytes: 16 << 20,
                max_concurrent_attempts: 64,
                flush_interval: Duration::from_millis(200),
                registry: tokio::sync::watch::channel(Default::default()).1,
                endpoints: holdfast_endpoint::EndpointClient::new(Default::default()),
                timeouts: holdfast_invocation::Timeouts::default(),
                fsm: holdfast_fsm::Config {
                    retry: holdfast_fsm::RetryPolicy {
                        max_attempts: 1,
                        on_max_attempts: holdfast_fsm::OnMaxAttempts::Pause,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                published: Arc::new(tokio::sync::watch::channel(None).0),
                spans: holdfast_otlp::SpanSink::disabled(),
                placement: Arc::new(holdfast_schema::Placement::single(1)),
            }
        }

        /// A delayed send starting at `execute_at_ms`.
        fn delayed(nonce: u128, execute_at_ms: u64) -> Command {
            let target = Target::new("Mailer", "send", None);
            Command::Invoke(Box::new(InvocationRequest {
                id: InvocationId::new(&target, nonce),
                target,
                kind: HandlerKind::Shared,
                argument: Payload::from(&b"{}"[..]),
                headers: Vec::new(),
                source: Source::Ingress,
                idempotency_key: None,
                retention_ms: 60_000,
                response: false,
                at_ms: now_ms(),
                deployment: None,
                retry: None,
                secret: 0,
                execute_at_ms: Some(execute_at_ms),
                trace: None,
            }))
        }

        async fn until_leader(addr: &Addr<PartitionActor>) {
            for _ in 0..500 {
                let status = addr.send(GetStatus).await.expect("status");
                if status.leader == Some(NodeId(1)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("partition never elected a leader");
        }

        async fn pending(addr: &Addr<PartitionActor>) -> u64 {
            addr.send(GetStatus).await.expect("status").pending_timers
        }

        /// Waits until no timer is pending; how long that took.
        async fn until_fired(addr: &Addr<PartitionActor>) -> Duration {
            let started = Instant::now();
            while pending(addr).await > 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "timers never fired"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started.elapsed()
        }

        #[actix_rt::test]
        async fn due_timers_fire_and_future_ones_wait() {
            let dir = tempfile::tempdir().expect("tempdir");
            let addr = PartitionActor::new(settings(dir.path())).start();
            until_leader(&addr).await;

            let now = now_ms();
            addr.send(Propose(delayed(1, now + 400)))
                .await
                .expect("mailbox")
                .expect("ack");
            assert_eq!(pending(&addr).await, 1);
            addr.send(Propose(delayed(2, now.saturating_sub(1_000))))
                .await
                .expect("mailbox")
                .expect("ack");
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(pending(&addr).await, 1, "the due timer fired at once");

            until_fired(&addr).await;
            // Judged against the wall clock, not a fixed wait: on a loaded machine the proposals
            // above may take a good part of the 400 ms.
            let fired_by = now_ms();
            assert!(
                fired_by >= now + 400,
                "fired {} ms early",
                now + 400 - fired_by
            );
            addr.send(Shutdown).await.expect("shutdown");
        }

        #[actix_rt::test]
        async fn timers_due_while_down_fire_after_restart() {
            let dir = tempfile::tempdir().expect("tempdir");
            let first = PartitionActor::new(settings(dir.path())).start();
            until_leader(&first).await;
            first
                .send(Propose(delayed(1, now_ms() + 300)))
                .await
                .expect("mailbox")
                .expect("ack");
            first.send(Shutdown).await.expect("shutdown");
            drop(first);

            tokio::time::sleep(Duration::from_millis(400)).await;
            let second = PartitionActor::new(settings(dir.path())).start();
            until_leader(&second).await;
            let waited = until_fired(&second).await;
            assert!(waited < Duration::from_secs(1), "fired late: {waited:?}");
            second.send(Shutdown).await.expect("shutdown");
        }
    }
}
