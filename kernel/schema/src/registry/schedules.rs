//! Creating, changing and removing schedules.
//!
//! - A definition must be valid on its own ([`Schedule::invalid`]) and name a live service and
//!   one of its handlers, with a key exactly when the service is keyed (400 otherwise).
//! - Creating refuses a name in use (409); replacing and removing refuse an unknown one (404).
//! - A schedule stays when its service goes away: its ticks then fail to resolve and are not
//!   fired until the service is back (the partition firing it logs why).

use super::{Applied, Registry};
use crate::{Refusal, Schedule};

impl Registry {
    pub(super) fn plan_put_schedule(
        &self,
        schedule: &Schedule,
        create: bool,
    ) -> Result<(), Refusal> {
        if let Some(reason) = schedule.invalid() {
            return Err(Refusal::InvalidSchedule(reason));
        }
        let service = self.service(&schedule.service).ok_or_else(|| {
            Refusal::InvalidSchedule(format!("service '{}' not found", schedule.service))
        })?;
        if let Some(reason) = schedule.mismatch(service) {
            return Err(Refusal::InvalidSchedule(reason));
        }
        match (create, self.schedules.contains_key(&schedule.name)) {
            (true, true) => Err(Refusal::ScheduleExists(schedule.name.clone())),
            (false, false) => Err(Refusal::UnknownSchedule(schedule.name.clone())),
            _ => Ok(()),
        }
    }

    pub(super) fn commit_put_schedule(&mut self, schedule: &Schedule, create: bool) -> Applied {
        self.schedules
            .insert(schedule.name.clone(), schedule.clone());
        Applied::SchedulePut {
            name: schedule.name.clone(),
            created: create,
        }
    }

    pub(super) fn plan_remove_schedule(&self, name: &str) -> Result<(), Refusal> {
        if self.schedules.contains_key(name) {
            Ok(())
        } else {
            Err(Refusal::UnknownSchedule(name.to_owned()))
        }
    }

    pub(super) fn commit_remove_schedule(&mut self, name: &str) -> Applied {
        self.schedules.remove(name);
        Applied::ScheduleRemoved(name.to_owned())
    }

    /// The schedule called `name`.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }
}
