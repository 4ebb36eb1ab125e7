//! Changing a live service's operator settings.
//!
//! The patch is written into every revision new invocations may still use (so a fallback keeps
//! it) and remembered for the service name, so later revisions inherit it until the service
//! disappears.

use super::{Applied, Registry};
use crate::{Invalid, Refusal, ServicePatch};
use holdfast_protocol::manifest::ServiceType;

impl Registry {
    pub(super) fn plan_modify(&self, service: &str, patch: &ServicePatch) -> Result<(), Refusal> {
        let live = self
            .service(service)
            .ok_or_else(|| Refusal::UnknownService(service.to_owned()))?;
        if patch.workflow_completion_retention.is_some() && live.ty != ServiceType::Workflow {
            return Err(Invalid::NotAWorkflow(service.to_owned()).into());
        }
        Ok(())
    }

    pub(super) fn commit_modify(&mut self, service: &str, patch: &ServicePatch) -> Applied {
        if let Some(entry) = self.services.get_mut(service) {
            entry.patch.merge(patch);
            for revision in &entry.revisions {
                let schema = self
                    .deployments
                    .get_mut(&revision.deployment)
                    .and_then(|d| d.services.iter_mut().find(|s| s.name == service));
                if let Some(schema) = schema {
                    patch.overlay(schema);
                }
            }
        }
        Applied::ServiceModified(service.to_owned())
    }
}
