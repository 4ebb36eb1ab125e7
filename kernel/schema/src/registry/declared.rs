//! Schedules declared in code. A handler's manifest may declare schedules; they follow the newest
//! revision of their service:
//!
//! - Registering checks every declared schedule (400 `invalid_schedule` names the one at fault)
//!   and that no two share a name; once registered, each is created, or replaced when its
//!   definition changed (a new spec restarts its ticks from the registration), keeping whether
//!   an operator paused it.
//! - A declared schedule the newest revisions no longer declare is removed (after a registration
//!   or a deployment's removal); one a service falls back to is created again from the older
//!   revision, its ticks counted from that deployment's creation (the catch-up policy decides).
//! - A schedule created through the admin API under the same name is taken over by the code.

use super::Registry;
use crate::{Refusal, Schedule, ServiceSchema, Timestamp};
use std::collections::BTreeMap;

/// The schedules `service`'s handlers declare (its deployment created `at`).
fn declared_by(service: &ServiceSchema, at: Timestamp) -> Result<Vec<Schedule>, String> {
    let mut out = Vec::new();
    for handler in &service.handlers {
        for (index, declaration) in handler.schedules.iter().enumerate() {
            out.push(Schedule::declared(
                service,
                &handler.name,
                index,
                declaration,
                at,
            )?);
        }
    }
    Ok(out)
}

impl Registry {
    /// Refuses a registration of `services` whose declared schedules are invalid or collide.
    pub(super) fn plan_declared(
        &self,
        services: &[ServiceSchema],
        at: Timestamp,
    ) -> Result<(), Refusal> {
        let mut names = BTreeMap::new();
        for service in services {
            for schedule in declared_by(service, at).map_err(Refusal::InvalidSchedule)? {
                if let Some(other) = names.insert(schedule.name.clone(), service.name.clone()) {
                    return Err(Refusal::InvalidSchedule(format!(
                        "schedule {:?} is declared twice (by {other} and {})",
                        schedule.name, service.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Brings the declared schedules in line with the newest revision of every service.
    pub(super) fn sync_declared(&mut self) {
        let mut wanted: BTreeMap<String, Schedule> = BTreeMap::new();
        for name in self.services.keys() {
            let Some(newest) = self.services[name].revisions.last() else {
                continue;
            };
            let Some(deployment) = self.deployments.get(&newest.deployment) else {
                continue;
            };
            let Some(service) = deployment.service(name) else {
                continue;
            };
            // Checked when the deployment was registered.
            let Ok(declared) = declared_by(service, deployment.created_at) else {
                continue;
            };
            for schedule in declared {
                wanted.entry(schedule.name.clone()).or_insert(schedule);
            }
        }
        self.schedules
            .retain(|name, schedule| !schedule.declared || wanted.contains_key(name));
        for (name, mut schedule) in wanted {
            if let Some(current) = self.schedules.get(&name) {
                if current.declared && current.same_definition(&schedule) {
                    continue;
                }
                schedule.paused = current.declared && current.paused;
                schedule.created_at = current.created_at;
                if current.spec == schedule.spec {
                    schedule.since = current.since;
                }
            }
            self.schedules.insert(name, schedule);
        }
    }
}
