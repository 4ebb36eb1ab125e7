//! Creating, replacing and removing flow-control limits.
//!
//! - A definition must be valid on its own ([`crate::limit::invalid`], 400); its service need not
//!   be registered yet.
//! - Creating refuses a name in use (409); replacing creates a missing limit (the configuration
//!   declares limits so at every start); removing refuses an unknown one (404).

use super::{Applied, Registry};
use crate::Refusal;
use holdfast_types::Limit;

impl Registry {
    pub(super) fn plan_put_limit(&self, limit: &Limit, create: bool) -> Result<(), Refusal> {
        if let Some(reason) = crate::limit::invalid(limit) {
            return Err(Refusal::InvalidLimit(reason));
        }
        if create && self.limits.contains_key(&limit.name) {
            return Err(Refusal::LimitExists(limit.name.clone()));
        }
        Ok(())
    }

    pub(super) fn commit_put_limit(&mut self, limit: &Limit) -> Applied {
        let created = self
            .limits
            .insert(limit.name.clone(), limit.clone())
            .is_none();
        Applied::LimitPut {
            name: limit.name.clone(),
            created,
        }
    }

    pub(super) fn plan_remove_limit(&self, name: &str) -> Result<(), Refusal> {
        if self.limits.contains_key(name) {
            Ok(())
        } else {
            Err(Refusal::UnknownLimit(name.to_owned()))
        }
    }

    pub(super) fn commit_remove_limit(&mut self, name: &str) -> Applied {
        self.limits.remove(name);
        Applied::LimitRemoved(name.to_owned())
    }

    /// The limit called `name`.
    pub fn limit(&self, name: &str) -> Option<&Limit> {
        self.limits.get(name)
    }

    /// Every limit, by name.
    pub fn limits(&self) -> impl Iterator<Item = &Limit> {
        self.limits.values()
    }
}
