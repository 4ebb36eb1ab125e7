//! The one actix handler behind every ingress path: classify the path, validate against the
//! registry, read and check the body, then hand a request to the [`Dispatcher`] and render its
//! answer. Every rejection happens before the dispatcher is called.

use crate::dispatch::{
    AwakeableCompletion, DispatchError, Dispatcher, IngressRequest, InvocationRef, Mode, Outcome,
    SendAccepted, SendStatus, Target,
};
use crate::error::Rejection;
use crate::route::{self, Action, Completion, Explicit, Route};
use crate::trace::{IngressSpan, Placement};
use crate::{IngressConfig, RegistryView, input, time};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use holdfast_protocol::manifest::{HandlerKind, ServiceType};
use holdfast_schema::duration as delay;
use holdfast_types::{AwakeableId, InvocationId};
use serde::Serialize;
use std::sync::Arc;

/// The invocation id of the response.
pub const INVOCATION_ID: HeaderName = HeaderName::from_static("x-restate-id");
/// Whether an error came from ingress (`ingress`) or from the invocation (`invocation`).
pub const ERROR_SOURCE: HeaderName = HeaderName::from_static("x-restate-error-source");
/// When a stored result stops being retrievable.
pub const IDEMPOTENCY_EXPIRES: HeaderName = HeaderName::from_static("idempotency-expires");
/// The request header that deduplicates invocations.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Methods that invoke a handler (Restate accepts any; these are the meaningful ones).
const INVOKE_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// What every worker shares.
pub struct State {
    /// Limits.
    pub config: IngressConfig,
    /// Request body bytes held by requests in flight, node-wide.
    pub inflight: input::Budget,
    /// The newest registry version.
    pub registry: RegistryView,
    /// The kernel.
    pub dispatcher: Arc<dyn Dispatcher>,
}

/// `{"code","message","source"}`, Restate's ingress error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
    source: &'static str,
}

/// `{"services": […]}`, the health body.
#[derive(Serialize)]
struct HealthBody {
    services: Vec<String>,
}

/// `{"invocationId","status"[,"executionTime"]}`, the answer to a send.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    invocation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_time: Option<String>,
    status: SendStatus,
}

/// Serves any path and method.
pub async fn handle(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let start_ns = holdfast_otlp::now_ns();
    // Set by `invoke` once the request is known to invoke a handler, if spans are recorded.
    let mut span = None;
    let response = match serve(&request, payload, &state, &mut span).await {
        Ok(response) => response,
        Err(rejection) => {
            if let Some(span) = span.as_mut() {
                span.error = Some(rejection.to_string());
            }
            reject(&rejection)
        }
    };
    if let Some(span) = span {
        state.config.spans.emit(span.finish(
            request.method().as_str(),
            request.path(),
            response.status().as_u16(),
            start_ns,
            holdfast_otlp::now_ns(),
        ));
    }
    response
}

async fn serve(
    request: &HttpRequest,
    payload: web::Payload,
    state: &State,
    span: &mut Option<IngressSpan>,
) -> Result<HttpResponse, Rejection> {
    match route::classify(request.path())? {
        Route::Health => {
            only_get(request)?;
            Ok(HttpResponse::Ok().json(HealthBody {
                services: state.dispatcher.health_services(),
            }))
        }
        Route::Invoke { segments, explicit } => {
            invoke(request, payload, state, &segments, explicit, span).await
        }
        Route::Invocation { segments, action } => {
            only_get(request)?;
            let reference = invocation_ref(state, request.path(), &segments)?;
            lookup(state, reference, action).await
        }
        Route::Workflow {
            service,
            key,
            action,
        } => {
            only_get(request)?;
            workflow_exists(state, &service)?;
            lookup(state, InvocationRef::Workflow { service, key }, action).await
        }
        Route::Awakeable { id, completion } => {
            complete_awakeable(request, payload, state, &id, completion).await
        }
    }
}

/// `POST /restate/awakeables/{id}/resolve|reject`: 202 with an empty body once the completion is
/// durable, whether or not it was the first.
async fn complete_awakeable(
    request: &HttpRequest,
    payload: web::Payload,
    state: &State,
    id: &str,
    completion: Completion,
) -> Result<HttpResponse, Rejection> {
    if request.method() != Method::POST {
        return Err(Rejection::MethodNotAllowed {
            method: request.method().to_string(),
            allowed: "POST",
        });
    }
    let id: AwakeableId =
        id.parse()
            .map_err(|e: holdfast_types::awakeable::ParseAwakeableIdError| {
                Rejection::BadAwakeableId(e.to_string())
            })?;
    let headers = request.headers();
    let (body, _held) = input::read_body(
        headers,
        payload,
        state.config.max_body_bytes,
        &state.inflight,
    )
    .await?;
    let completion = match completion {
        Completion::Resolve => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            // A body declared as JSON must be JSON; other bodies are passed on as they are.
            if content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json"))
            {
                input::validate_body("application/json", content_type.as_deref(), &body)?;
            }
            AwakeableCompletion::Resolve(body)
        }
        Completion::Reject => AwakeableCompletion::Reject(
            String::from_utf8(body.to_vec()).map_err(|_| Rejection::BadReason)?,
        ),
    };
    state.dispatcher.complete_awakeable(id, completion).await?;
    Ok(HttpResponse::Accepted().finish())
}

fn only_get(request: &HttpRequest) -> Result<(), Rejection> {
    if request.method() == Method::GET {
        Ok(())
    } else {
        Err(Rejection::MethodNotAllowed {
            method: request.method().to_string(),
            allowed: "GET",
        })
    }
}

/// Validates an invocation request completely, then calls or sends it. Once the path names a
/// handler, the request gets its place in a trace and, if spans are recorded, its `span`.
async fn invoke(
    request: &HttpRequest,
    payload: web::Payload,
    state: &State,
    segments: &[String],
    explicit: Explicit,
    span: &mut Option<IngressSpan>,
) -> Result<HttpResponse, Rejection> {
    let method = request.method();
    if ![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .contains(method)
    {
        return Err(Rejection::MethodNotAllowed {
            method: method.to_string(),
            allowed: INVOKE_METHODS,
        });
    }
    let (service_name, after_service) = segments.split_first().ok_or(Rejection::BadPath)?;
    if service_name.is_empty() {
        return Err(Rejection::BadPath);
    }
    let registry = state.registry.borrow().clone();
    let service = registry
        .service(service_name)
        .ok_or_else(|| Rejection::ServiceNotFound(service_name.clone()))?;
    let shape = route::invocation_shape(service.ty, after_service, explicit)?;
    let placement = Placement::from_headers(request.headers());
    if state.config.spans.enabled() && placement.incoming.sampled {
        *span = Some(IngressSpan::new(
            placement,
            service_name,
            &shape.handler,
            shape.key.as_deref(),
            shape.send,
        ));
    }
    let resolved = registry
        .resolve(service_name, &shape.handler)
        .ok_or_else(|| Rejection::HandlerNotFound {
            service: service_name.clone(),
            handler: shape.handler.clone(),
        })?;
    if !resolved.is_public() {
        return Err(Rejection::Private {
            service: service_name.clone(),
            handler: shape.handler,
        });
    }
    let delay = match route::query_param(request.query_string(), "delay") {
        None => None,
        Some(_) if !shape.send => return Err(Rejection::DelayWithCall),
        Some(Err(())) => {
            return Err(Rejection::BadDelay {
                raw: request.query_string().to_owned(),
                reason: "not percent-encoded UTF-8".to_owned(),
            });
        }
        Some(Ok(raw)) => Some(delay::parse(&raw).map_err(|e| Rejection::BadDelay {
            reason: e.to_string(),
            raw,
        })?),
    };
    let headers = request.headers();
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() => Some(key.to_owned()),
            _ => return Err(Rejection::BadIdempotencyKey),
        },
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let declared_input = resolved.handler.input.clone();
    let template = IngressRequest {
        target: Target {
            service: service_name.clone(),
            handler: shape.handler,
            key: shape.key,
        },
        service_type: resolved.service.ty,
        handler_kind: resolved.handler.kind,
        deployment: resolved.deployment.id,
        idempotency_retention: resolved.service.idempotency_retention,
        workflow_retention: resolved.service.workflow_completion_retention,
        argument: bytes::Bytes::new(),
        content_type,
        headers: input::forwarded_headers(headers),
        idempotency_key,
        mode: if shape.send {
            Mode::Send { delay }
        } else {
            Mode::Call
        },
        trace: Some(placement.child()),
    };
    drop(registry);

    let (body, _held) = input::read_body(
        headers,
        payload,
        state.config.max_body_bytes,
        &state.inflight,
    )
    .await?;
    input::validate_body(&declared_input, template.content_type.as_deref(), &body)?;
    let request = IngressRequest {
        argument: body,
        ..template
    };
    if shape.send {
        let accepted = state.dispatcher.send(request).await?;
        if let Some(span) = span.as_mut() {
            span.invocation_id = Some(accepted.invocation_id.clone());
        }
        Ok(accepted_response(accepted))
    } else {
        let outcome = state.dispatcher.call(request).await?;
        if let Some(span) = span.as_mut() {
            span.invocation_id = Some(outcome.invocation_id.clone());
            if let Err(failure) = &outcome.result {
                span.error = Some(failure.message.clone());
            }
        }
        Ok(outcome_response(outcome))
    }
}

/// Reads `/restate/invocation/{…}` into a reference, validating it against the registry.
fn invocation_ref(
    state: &State,
    path: &str,
    segments: &[String],
) -> Result<InvocationRef, Rejection> {
    let bad_path = || Rejection::BadLookupPath {
        path: path.to_owned(),
        expected: route::INVOCATION_PATHS,
    };
    match segments {
        [] => Err(bad_path()),
        [id] => match id.parse::<InvocationId>() {
            Ok(_) => Ok(InvocationRef::Id(id.clone())),
            Err(error) => Err(Rejection::BadInvocationId(error.to_string())),
        },
        [service_name, ..] => {
            let registry = state.registry.borrow().clone();
            let service = registry
                .service(service_name)
                .ok_or_else(|| Rejection::ServiceNotFound(service_name.clone()))?;
            let shape = route::lookup_shape(service.ty, segments).ok_or_else(bad_path)?;
            let resolved = registry
                .resolve(service_name, &shape.handler)
                .ok_or_else(|| Rejection::HandlerNotFound {
                    service: service_name.clone(),
                    handler: shape.handler.clone(),
                })?;
            if !resolved.is_public() {
                return Err(Rejection::Private {
                    service: service_name.clone(),
                    handler: shape.handler,
                });
            }
            Ok(InvocationRef::Idempotency {
                target: Target {
                    service: service_name.clone(),
                    handler: shape.handler,
                    key: shape.key,
                },
                idempotency_key: shape.idempotency_key,
            })
        }
    }
}

/// Checks that `service` is a live, public workflow.
fn workflow_exists(state: &State, service: &str) -> Result<(), Rejection> {
    let registry = state.registry.borrow().clone();
    let schema = registry
        .service(service)
        .ok_or_else(|| Rejection::ServiceNotFound(service.to_owned()))?;
    if schema.ty != ServiceType::Workflow {
        return Err(Rejection::NotAWorkflow(service.to_owned()));
    }
    let run = schema
        .handlers
        .iter()
        .find(|h| h.kind == HandlerKind::Workflow);
    match run {
        Some(run) if schema.public && run.public => Ok(()),
        Some(run) => Err(Rejection::Private {
            service: service.to_owned(),
            handler: run.name.clone(),
        }),
        // The registry refuses workflows without exactly one workflow handler.
        None => Err(Rejection::NotAWorkflow(service.to_owned())),
    }
}

async fn lookup(
    state: &State,
    reference: InvocationRef,
    action: Action,
) -> Result<HttpResponse, Rejection> {
    let outcome = match action {
        Action::Attach => state.dispatcher.attach(reference).await?,
        Action::Output => state
            .dispatcher
            .output(reference)
            .await?
            .ok_or(DispatchError::NotReady)?,
    };
    Ok(outcome_response(outcome))
}

/// Inserts `value` if it is a valid header value; values come from the kernel, so an invalid one
/// is left out rather than failing the whole response.
fn try_header(builder: &mut HttpResponseBuilder, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            builder.insert_header((name, value));
        }
        Err(_) => tracing::warn!(header = %name, value, "dropping an invalid response header"),
    }
}

/// The handler's output, or its terminal failure as `{"code","message","source":"invocation"}`.
fn outcome_response(outcome: Outcome) -> HttpResponse {
    let status = match &outcome.result {
        Ok(_) => StatusCode::OK,
        Err(failure) if (400..=999).contains(&failure.code) => {
            StatusCode::from_u16(failure.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut builder = build(status);
    try_header(&mut builder, INVOCATION_ID, &outcome.invocation_id);
    if let Some(expires) = outcome.expires_at {
        try_header(
            &mut builder,
            IDEMPOTENCY_EXPIRES,
            &time::header_form(expires),
        );
    }
    match outcome.result {
        Ok(output) => {
            if let Some(content_type) = &output.content_type {
                try_header(&mut builder, header::CONTENT_TYPE, content_type);
            }
            builder.body(output.body)
        }
        Err(failure) => {
            builder.insert_header((ERROR_SOURCE, "invocation"));
            builder.json(ErrorBody {
                code: status.as_u16(),
                message: &failure.message,
                source: "invocation",
            })
        }
    }
}

/// 202 with `{"invocationId","status"}`.
fn accepted_response(accepted: SendAccepted) -> HttpResponse {
    let mut builder = HttpResponse::Accepted();
    try_header(&mut builder, INVOCATION_ID, &accepted.invocation_id);
    builder.json(SendBody {
        execution_time: accepted.execution_time.map(time::body_form),
        invocation_id: accepted.invocation_id,
        status: accepted.status,
    })
}

/// A response builder for `status`; codes without a standard reason phrase (470, a handler's
/// custom code) get `<none>`, the phrase Restate's status line carries for them.
fn build(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    if status.canonical_reason().is_none() {
        builder.reason("<none>");
    }
    builder
}

/// `{"code","message","source":"ingress"}` with the rejection's status.
fn reject(rejection: &Rejection) -> HttpResponse {
    let status =
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(%rejection, "ingress request failed");
    }
    let mut builder = build(status);
    builder.insert_header((ERROR_SOURCE, "ingress"));
    if let Rejection::MethodNotAllowed { allowed, .. } = rejection {
        builder.insert_header((header::ALLOW, *allowed));
    }
    // Unavailable is temporary (no leader yet, overload, an outcome not known in time): the
    // client retries, with its idempotency key making the retry safe.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder.insert_header((header::RETRY_AFTER, "1"));
    }
    let message = rejection.to_string();
    builder.json(ErrorBody {
        code: status.as_u16(),
        message: &message,
        source: "ingress",
    })
}
