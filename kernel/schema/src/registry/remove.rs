//! Removing a deployment.
//!
//! - Refused as a conflict unless `force` while the deployment serves the newest revision of any
//!   service. With `force`, each such service falls back to its previous revision still served by a
//!   current deployment, or disappears if it has none.
//! - Superseded deployments serve no newest revision, so they can always be removed.

use super::{Applied, Registry};
use crate::{Conflict, Conflicts, DeploymentId, Refusal};

impl Registry {
    pub(super) fn plan_remove(&self, id: DeploymentId, force: bool) -> Result<(), Refusal> {
        if !self.deployments.contains_key(&id) {
            return Err(Refusal::UnknownDeployment(id));
        }
        if force {
            return Ok(());
        }
        let services: Vec<String> = self
            .services
            .keys()
            .filter(|name| self.is_newest(name, id))
            .cloned()
            .collect();
        if services.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Conflict(Conflicts(vec![
                Conflict::DeploymentInUse { id, services },
            ])))
        }
    }

    pub(super) fn commit_remove(&mut self, id: DeploymentId) -> Applied {
        self.deployments.remove(&id);
        let (fell_back, disappeared) = self.drop_revisions_of(id);
        self.sync_declared();
        Applied::Removed {
            id,
            fell_back,
            disappeared,
        }
    }
}
