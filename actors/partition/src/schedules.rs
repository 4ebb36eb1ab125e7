//! The schedules this partition fires. The registry holds their definitions; a schedule belongs
//! to the partition its name routes to, whose leader looks at it every second and at its next
//! tick: it reads what the partition recorded of the schedule's ticks, asks
//! [`holdfast_schedule::due`] which are due by its clock, and proposes a `FireSchedule` for each.
//! Applying one starts the tick's invocation once; a tick proposed twice (by this leader before
//! the first was applied, or again by the next leader) changes nothing the second time.

use crate::actor::PartitionActor;
use crate::effects::now_ms;
use crate::leader::Leadership;
use actix::prelude::*;
use holdfast_fsm::state::ScheduleRun;
use holdfast_protocol::Payload;
use holdfast_schema::{Registry, Schedule};
use holdfast_types::{
    Command, HandlerKind, InvocationId, InvocationRequest, RetryPolicy, Source, Target,
};
use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

/// How often the leader looks at its schedules when no tick is nearer: a schedule created,
/// changed or resumed is picked up within this.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The leader's view of the schedules it fires.
#[derive(Default)]
pub(crate) struct Firing {
    /// A look is reading the store.
    looking: bool,
    /// The newest tick this leader proposed per schedule, so that a look before that command is
    /// applied does not propose it again.
    proposed: HashMap<String, u64>,
    /// The timer of the next look, when a tick is nearer than [`LOOK_EVERY`].
    next: Option<SpawnHandle>,
}

/// A schedule this partition fires and what it recorded of its ticks.
type Look = Result<Vec<(Schedule, Option<ScheduleRun>)>, String>;

impl PartitionActor {
    /// Reads the record of every schedule this partition fires (leader only), then fires what
    /// is due.
    pub(crate) fn look_at_schedules(&mut self, ctx: &mut Context<Self>) {
        let partition = self.partition();
        let partitions = self.settings.placement.partitions;
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        let Some(group) = &self.group else { return };
        if leader.schedules.looking {
            return;
        }
        let owned: Vec<Schedule> = self
            .settings
            .registry
            .borrow()
            .schedules()
            .filter(|s| !s.paused && s.partition(partitions) == partition)
            .cloned()
            .collect();
        if owned.is_empty() {
            return;
        }
        leader.schedules.looking = true;
        let term = leader.term;
        let state = group.state.clone();
        let read = async move {
            let runs = tokio::task::spawn_blocking(move || {
                owned
                    .into_iter()
                    .map(|schedule| {
                        let run = state.schedule_run(&schedule.name)?;
                        Ok((schedule, run))
                    })
                    .collect::<Result<Vec<_>, holdfast_raft_store::Error>>()
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|read| read.map_err(|e| e.to_string()));
            (term, runs)
        };
        ctx.spawn(
            read.into_actor(self)
                .map(|(term, runs), act, ctx| act.fire_due(term, runs, ctx)),
        );
    }

    /// Proposes a `FireSchedule` for every due tick, and sets the next look.
    fn fire_due(&mut self, term: u64, look: Look, ctx: &mut Context<Self>) {
        let now = now_ms();
        let partition = self.partition();
        let registry = self.settings.registry.borrow().clone();
        let node_retry = self.settings.fsm.retry;
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if leader.term != term {
            return;
        }
        leader.schedules.looking = false;
        let runs = match look {
            Ok(runs) => runs,
            Err(message) => {
                tracing::warn!(%partition, %message, "cannot read the schedules' records");
                return;
            }
        };
        // Forget what was proposed for schedules this partition no longer fires.
        leader
            .schedules
            .proposed
            .retain(|name, _| runs.iter().any(|(schedule, _)| schedule.name == *name));
        let mut commands = Vec::new();
        let mut nearest: Option<u64> = None;
        for (schedule, run) in runs {
            // The registry refuses a spec that does not parse.
            let Ok(spec) = schedule.spec.parse() else {
                continue;
            };
            let proposed = leader.schedules.proposed.get(&schedule.name).copied();
            let after = [
                Some(schedule.since.0),
                run.map(|run| run.last_tick_ms),
                proposed,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
            let due = holdfast_schedule::due(&spec, after, now, schedule.catch_up);
            nearest = match (nearest, due.next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut skipped = due.skipped;
            for tick in due.fire {
                match tick_request(&registry, &schedule, tick, now, node_retry) {
                    Ok(request) => commands.push(Command::FireSchedule {
                        name: schedule.name.clone(),
                        tick_ms: tick,
                        skipped: std::mem::take(&mut skipped),
                        overlap: schedule.overlap,
                        request: Box::new(request),
                    }),
                    Err(reason) => {
                        tracing::warn!(%partition, schedule = %schedule.name, tick, %reason, "schedule tick not fired");
                        break;
                    }
                }
                leader
                    .schedules
                    .proposed
                    .insert(schedule.name.clone(), tick);
            }
        }
        if let Some(next) = nearest {
            let wait = Duration::from_millis(next.saturating_sub(now));
            if wait < LOOK_EVERY {
                if let Some(timer) = leader.schedules.next.take() {
                    ctx.cancel_future(timer);
                }
                leader.schedules.next =
                    Some(ctx.run_later(wait, |act, ctx| act.look_at_schedules(ctx)));
            }
        }
        if !commands.is_empty() {
            self.submit(commands, ctx);
        }
    }
}

/// The invocation tick `tick_ms` of `schedule` starts, resolved from the registry as the ingress
/// resolves a request: the newest deployment serving the handler, its kind and retry policy.
fn tick_request(
    registry: &Registry,
    schedule: &Schedule,
    tick_ms: u64,
    now_ms: u64,
    node_retry: RetryPolicy,
) -> Result<InvocationRequest, String> {
    let resolved = registry
        .resolve(&schedule.service, &schedule.handler)
        .ok_or_else(|| {
            format!(
                "{}/{} is not registered",
                schedule.service, schedule.handler
            )
        })?;
    let target = Target::new(
        &schedule.service,
        &schedule.handler,
        schedule.key_at(tick_ms),
    );
    let kind = resolved.handler.kind;
    let idempotency_key = schedule.idempotency_key(tick_ms);
    let id = match kind {
        HandlerKind::Workflow => InvocationId::workflow(&target),
        _ => InvocationId::idempotent(&target, &idempotency_key),
    };
    let retention = resolved
        .service
        .workflow_completion_retention
        .unwrap_or(resolved.service.idempotency_retention);
    let headers = match schedule.input {
        Some(_) => vec![("content-type".to_owned(), "application/json".to_owned())],
        None => Vec::new(),
    };
    Ok(InvocationRequest {
        id,
        target,
        kind,
        argument: Payload(schedule.input.clone().unwrap_or_default().into()),
        headers,
        source: Source::Schedule {
            name: schedule.name.clone(),
            tick_ms,
        },
        idempotency_key: Some(idempotency_key),
        retention_ms: retention.0,
        response: false,
        at_ms: now_ms,
        deployment: Some(resolved.deployment.id),
        retry: Some(
            resolved
                .service
                .retry_policy_for(resolved.handler, node_retry),
        ),
        secret: secret(&schedule.name, tick_ms),
        execute_at_ms: None,
        trace: None,
    })
}

/// A secret for a tick's invocation (its awakeable ids are signed with a key derived from it):
/// from the process's random hash keys, not from anything a caller knows.
fn secret(name: &str, tick_ms: u64) -> u128 {
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write(name.as_bytes());
        hasher.write_u64(tick_ms);
        hasher.write_u8(salt);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}
