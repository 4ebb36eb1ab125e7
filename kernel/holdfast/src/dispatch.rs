//! The kernel's side of the ingress: turns validated HTTP requests into invocations proposed to
//! the partition that owns them, and answers with their results.

use futures::future::BoxFuture;
use holdfast_ingress::{
    AwakeableCompletion, DispatchError, Dispatcher, IngressRequest, InvocationRef, Mode, Outcome,
    Output, SendAccepted, SendStatus,
};
use holdfast_partition::{Answer, Invoked, Lookup, ProposeError, Request, Router};
use holdfast_protocol::Payload;
use holdfast_schema::{Registry, Timestamp};
use holdfast_types::{AwakeableId, HandlerKind, InvocationId, InvocationRequest, Source, Target};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Routes ingress requests to the leaders of the partitions that own them, on any node.
pub struct KernelDispatcher {
    router: Router,
    registry: watch::Receiver<Arc<Registry>>,
}

impl KernelDispatcher {
    /// A dispatcher delivering through `router`.
    pub fn new(router: Router, registry: watch::Receiver<Arc<Registry>>) -> Self {
        Self { router, registry }
    }

    /// Asks the partition owning `id` and unpacks the answer's kind with `expect`.
    fn ask<T: Send + 'static>(
        &self,
        id: InvocationId,
        request: Request,
        expect: fn(Answer) -> Option<T>,
    ) -> BoxFuture<'static, Result<T, DispatchError>> {
        let router = self.router.clone();
        let partition = id.partition(router.partitions());
        Box::pin(async move {
            let answer = router.ask(partition, request).await.map_err(refused)?;
            expect(answer).ok_or_else(|| {
                DispatchError::Internal("the partition answered another request".into())
            })
        })
    }

    fn id_of(&self, reference: &InvocationRef) -> Result<InvocationId, DispatchError> {
        match reference {
            InvocationRef::Id(text) => text.parse().map_err(|_| DispatchError::NotFound),
            InvocationRef::Idempotency {
                target,
                idempotency_key,
            } => Ok(InvocationId::idempotent(target, idempotency_key)),
            InvocationRef::Workflow { service, key } => {
                let registry = self.registry.borrow();
                let run = registry
                    .service(service)
                    .and_then(|s| s.handlers.iter().find(|h| h.kind == HandlerKind::Workflow))
                    .ok_or(DispatchError::NotFound)?;
                Ok(InvocationId::workflow(&Target::new(
                    service.clone(),
                    run.name.clone(),
                    Some(key.clone()),
                )))
            }
        }
    }
}

/// 128 random bits from the operating system, for invocation ids and secrets; should the OS
/// source fail, from the process's randomly keyed hasher.
fn nonce() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_ok() {
        return u128::from_be_bytes(bytes);
    }
    let half = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    };
    (u128::from(half()) << 64) | u128::from(half())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn refused(error: ProposeError) -> DispatchError {
    match error {
        ProposeError::Storage { message, .. } => DispatchError::Internal(message),
        unknown @ (ProposeError::Unknown { .. } | ProposeError::LostLeadership(_)) => {
            DispatchError::Unavailable(format!(
                "{unknown}; retry with the same idempotency key to learn it"
            ))
        }
        other => DispatchError::Unavailable(other.to_string()),
    }
}

/// The answer to `Await` and `Get`.
fn lookup(answer: Answer) -> Option<Lookup> {
    match answer {
        Answer::Lookup(lookup) => Some(lookup),
        _ => None,
    }
}

fn outcome(
    id: InvocationId,
    result: holdfast_protocol::Outcome,
    expires_at: Option<u64>,
) -> Outcome {
    use holdfast_protocol::Outcome as Done;
    let result = match result {
        Done::Void => Ok(Output {
            body: bytes::Bytes::new(),
            content_type: None,
        }),
        Done::Value(Payload(body)) => Ok(Output {
            content_type: (!body.is_empty()).then(|| "application/json".to_string()),
            body,
        }),
        Done::Keys(keys) => Ok(Output {
            body: serde_json::to_vec(&keys).unwrap_or_default().into(),
            content_type: Some("application/json".to_string()),
        }),
        Done::Failure(failure) => Err(holdfast_ingress::Failure {
            code: failure.code,
            message: failure.message,
        }),
    };
    Outcome {
        invocation_id: id.to_string(),
        result,
        expires_at: expires_at.map(Timestamp),
    }
}

impl Dispatcher for KernelDispatcher {
    fn call(&self, request: IngressRequest) -> BoxFuture<'static, Result<Outcome, DispatchError>> {
        let invoked = self.invoke(request, true);
        Box::pin(async move {
            let (invoked, _) = invoked.await?;
            let done = invoked.outcome.ok_or_else(|| {
                DispatchError::Internal("the invocation ended without a result".into())
            })?;
            Ok(outcome(invoked.id, done, None))
        })
    }

    fn send(
        &self,
        request: IngressRequest,
    ) -> BoxFuture<'static, Result<SendAccepted, DispatchError>> {
        let invoked = self.invoke(request, false);
        Box::pin(async move {
            let (invoked, execute_at_ms) = invoked.await?;
            // A workflow runs once per key: a finished run is not joined, it is refused.
            if invoked.workflow_finished {
                return Err(DispatchError::Conflict(
                    holdfast_fsm::WORKFLOW_ALREADY_INVOKED.into(),
                ));
            }
            Ok(SendAccepted {
                invocation_id: invoked.id.to_string(),
                status: if invoked.previously {
                    SendStatus::PreviouslyAccepted
                } else {
                    SendStatus::Accepted
                },
                execution_time: execute_at_ms.map(Timestamp),
            })
        })
    }

    fn attach(
        &self,
        reference: InvocationRef,
    ) -> BoxFuture<'static, Result<Outcome, DispatchError>> {
        let id = match self.id_of(&reference) {
            Ok(id) => id,
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        let lookup = self.ask(id, Request::Await(id), lookup);
        Box::pin(async move {
            match lookup.await? {
                Lookup::Unknown => Err(DispatchError::NotFound),
                Lookup::Running => Err(DispatchError::NotReady),
                Lookup::Completed {
                    outcome: done,
                    expires_at_ms,
                } => Ok(outcome(id, done, expires_at_ms)),
            }
        })
    }

    fn output(
        &self,
        reference: InvocationRef,
    ) -> BoxFuture<'static, Result<Option<Outcome>, DispatchError>> {
        let id = match self.id_of(&reference) {
            Ok(id) => id,
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        let lookup = self.ask(id, Request::Get(id), lookup);
        Box::pin(async move {
            match lookup.await? {
                Lookup::Unknown => Err(DispatchError::NotFound),
                Lookup::Running => Ok(None),
                Lookup::Completed {
                    outcome: done,
                    expires_at_ms,
                } => Ok(Some(outcome(id, done, expires_at_ms))),
            }
        })
    }

    fn complete_awakeable(
        &self,
        id: AwakeableId,
        completion: AwakeableCompletion,
    ) -> BoxFuture<'static, Result<(), DispatchError>> {
        let outcome = match completion {
            AwakeableCompletion::Resolve(value) => {
                holdfast_protocol::Outcome::Value(Payload(value))
            }
            AwakeableCompletion::Reject(reason) => {
                holdfast_protocol::Outcome::Failure(holdfast_protocol::Failure {
                    code: 500,
                    message: reason,
                })
            }
        };
        let request = Request::CompleteAwakeable {
            id: id.to_string(),
            outcome,
        };
        let known = self.ask(id.invocation, request, |answer| match answer {
            Answer::Awakeable(known) => Some(known),
            _ => None,
        });
        Box::pin(async move {
            if known.await? {
                Ok(())
            } else {
                Err(DispatchError::AwakeableNotFound)
            }
        })
    }

    fn health_services(&self) -> Vec<String> {
        self.registry
            .borrow()
            .services()
            .into_iter()
            .map(|s| s.name.clone())
            .collect()
    }
}

impl KernelDispatcher {
    /// Proposes the invocation to the partition that owns it; with `wait`, until it completes.
    /// Also answers when a delayed one starts (Unix milliseconds).
    fn invoke(
        &self,
        request: IngressRequest,
        wait: bool,
    ) -> BoxFuture<'static, Result<(Invoked, Option<u64>), DispatchError>> {
        let target = request.target.clone();
        let kind = request.handler_kind;
        let id = match (&request.idempotency_key, kind) {
            (_, HandlerKind::Workflow) => InvocationId::workflow(&target),
            (Some(key), _) => InvocationId::idempotent(&target, key),
            (None, _) => InvocationId::new(&target, nonce()),
        };
        let at_ms = now_ms();
        let execute_at_ms = match request.mode {
            Mode::Send { delay: Some(delay) } => {
                Some(at_ms.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)))
            }
            _ => None,
        };
        let retention = request
            .workflow_retention
            .unwrap_or(request.idempotency_retention);
        let invocation = InvocationRequest {
            id,
            target,
            kind,
            argument: Payload(request.argument),
            headers: request.headers,
            source: Source::Ingress,
            idempotency_key: request.idempotency_key,
            retention_ms: retention.0,
            response: wait,
            at_ms,
            deployment: Some(request.deployment),
            // Resolved by the owning partition from the registry and its configuration.
            retry: None,
            secret: nonce(),
            execute_at_ms,
            trace: request.trace,
        };
        let request = Request::Invoke {
            request: Box::new(invocation),
            wait,
        };
        let invoked = self.ask(id, request, |answer| match answer {
            Answer::Invoked(invoked) => Some(invoked),
            _ => None,
        });
        Box::pin(async move { Ok((invoked.await?, execute_at_ms)) })
    }
}
