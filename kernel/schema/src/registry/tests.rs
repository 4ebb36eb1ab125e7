//! Scenario tests: apply commands, assert the outcome and the resulting registry.

use super::*;
use crate::{Conflict, Conflicts, Invalid, Millis, Timestamp, views};
use holdfast_protocol::manifest::{
    self, Handler, HandlerKind, Manifest, ProtocolMode, Service, ServiceType,
};
use holdfast_types::codec;

fn handler(name: &str, kind: HandlerKind) -> Handler {
    Handler {
        name: name.into(),
        kind,
        input: "application/json".into(),
        output: "application/json".into(),
        retry_policy: None,
        inactivity_timeout_ms: None,
        abort_timeout_ms: None,
        schedules: Vec::new(),
    }
}

fn service(name: &str, ty: ServiceType, handlers: &[(&str, HandlerKind)]) -> Service {
    Service {
        name: name.into(),
        ty,
        handlers: handlers.iter().map(|(n, k)| handler(n, *k)).collect(),
        retry_policy: None,
        inactivity_timeout_ms: None,
        abort_timeout_ms: None,
    }
}

fn greeter() -> Service {
    service(
        "Greeter",
        ServiceType::Service,
        &[("greet", HandlerKind::Shared)],
    )
}

fn counter() -> Service {
    service(
        "Counter",
        ServiceType::Object,
        &[
            ("add", HandlerKind::Exclusive),
            ("get", HandlerKind::Shared),
        ],
    )
}

fn signup() -> Service {
    service(
        "Signup",
        ServiceType::Workflow,
        &[
            ("run", HandlerKind::Workflow),
            ("status", HandlerKind::Shared),
        ],
    )
}

fn manifest(services: Vec<Service>) -> Manifest {
    Manifest {
        min_protocol_version: 1,
        max_protocol_version: 1,
        protocol_modes: vec![ProtocolMode::Stream, ProtocolMode::RequestResponse],
        services,
        sdk_version: None,
    }
}

const SDK: &str = "holdfast-sdk-typescript/0.1.0";

/// `manifest(services)` declaring `sdk_version`.
fn manifest_from(sdk_version: &str, services: Vec<Service>) -> Manifest {
    Manifest {
        sdk_version: Some(sdk_version.into()),
        ..manifest(services)
    }
}

fn register(seed: u128, uri: &str, manifest: Manifest, force: bool) -> RegistryCommand {
    RegistryCommand::RegisterDeployment {
        seed,
        uri: uri.into(),
        manifest,
        force,
        at_ms: Timestamp(1_700_000_000_000 + u64::try_from(seed).unwrap_or(0)),
    }
}

fn remove(seed: u128, force: bool) -> RegistryCommand {
    RegistryCommand::RemoveDeployment {
        id: id(seed),
        force,
    }
}

fn id(seed: u128) -> DeploymentId {
    DeploymentId::from_seed(seed)
}

const A: &str = "http://a:9080/";
const B: &str = "http://b:9080/";

/// Applies `command`, expecting success.
fn ok(registry: &mut Registry, command: &RegistryCommand) -> Applied {
    assert_eq!(registry.check(command), Ok(()), "check {command:?}");
    registry.apply(command).expect("applied")
}

/// Applies `command`, expecting a refusal that `check` predicted and that changed nothing.
fn refused(registry: &mut Registry, command: &RegistryCommand) -> Refusal {
    let before = registry.clone();
    let predicted = registry.check(command).expect_err("check refuses");
    let refusal = registry.apply(command).expect_err("apply refuses");
    assert_eq!(predicted, refusal);
    assert_eq!(*registry, before, "a refused command changed the registry");
    refusal
}

fn newest(registry: &Registry, name: &str) -> (u32, DeploymentId) {
    let schema = registry.service(name).expect("live service");
    (schema.revision, schema.deployment_id)
}

fn conflicts(refusal: Refusal) -> Vec<Conflict> {
    match refusal {
        Refusal::Conflict(Conflicts(conflicts)) => conflicts,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn registering_a_new_endpoint_creates_revision_one_of_each_service() {
    let mut registry = Registry::new();
    let applied = ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    assert_eq!(applied, Applied::Registered(id(1)));

    let deployment = registry.deployment(&id(1)).expect("deployment");
    assert_eq!(deployment.uri, A);
    assert_eq!(deployment.created_at, Timestamp(1_700_000_000_001));
    assert_eq!(deployment.superseded_by, None);
    let names: Vec<&str> = deployment
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["Counter", "Greeter"]);

    let resolved = registry.resolve("Counter", "add").expect("resolves");
    assert_eq!(resolved.deployment.id, id(1));
    assert_eq!(resolved.service.revision, 1);
    assert_eq!(resolved.handler.kind, HandlerKind::Exclusive);
    assert!(resolved.is_public());
    assert!(registry.resolve("Counter", "nope").is_none());
    assert!(registry.resolve("Nope", "add").is_none());
    assert_eq!(registry.current_at(A).map(|d| d.id), Some(id(1)));
}

#[test]
fn new_services_get_the_documented_defaults() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![signup(), greeter()]), false),
    );
    let greeter = registry.service("Greeter").expect("greeter");
    assert!(greeter.public);
    assert_eq!(greeter.idempotency_retention, Millis(86_400_000));
    assert_eq!(greeter.journal_retention, Millis(86_400_000));
    assert_eq!(greeter.workflow_completion_retention, None);
    // Undeclared timeouts and retry fields stay unset: the node's configuration decides.
    assert_eq!(greeter.inactivity_timeout, None);
    assert_eq!(greeter.abort_timeout, None);
    assert_eq!(greeter.retry_policy, crate::RetryOverrides::default());
    let greet = greeter.handler("greet").expect("handler");
    assert!(greet.public);
    assert_eq!(greet.retry, None);
    assert_eq!(
        greeter.attempt_policy(greet, &crate::AttemptPolicy::default()),
        crate::AttemptPolicy::default()
    );
    let signup = registry.service("Signup").expect("signup");
    assert_eq!(
        signup.workflow_completion_retention,
        Some(Millis(86_400_000))
    );
}

#[test]
fn re_registering_an_identical_endpoint_returns_the_existing_deployment() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    let before = registry.clone();
    // Another seed, services and handlers in another order: still the same endpoint.
    let mut reordered = counter();
    reordered.handlers.reverse();
    let again = register(2, A, manifest(vec![greeter(), reordered]), false);
    assert_eq!(ok(&mut registry, &again), Applied::AlreadyRegistered(id(1)));
    assert_eq!(registry, before);
    assert!(registry.deployment(&id(2)).is_none());
}

#[test]
fn forced_identical_re_registration_creates_a_new_revision() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    let applied = ok(
        &mut registry,
        &register(2, A, manifest(vec![greeter()]), true),
    );
    assert_eq!(applied, Applied::Registered(id(2)));
    assert_eq!(newest(&registry, "Greeter"), (2, id(2)));
    let old = registry.deployment(&id(1)).expect("old deployment kept");
    assert_eq!(old.superseded_by, Some(id(2)));
    assert_eq!(registry.current_at(A).map(|d| d.id), Some(id(2)));
}

#[test]
fn a_changed_endpoint_at_the_same_uri_creates_a_new_revision_and_pins_the_old() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter()]), false),
    );
    let mut grown = counter();
    grown
        .handlers
        .push(handler("reset", HandlerKind::Exclusive));
    let applied = ok(&mut registry, &register(2, A, manifest(vec![grown]), false));
    assert_eq!(applied, Applied::Registered(id(2)));

    // New invocations go to the newest revision...
    let resolved = registry.resolve("Counter", "reset").expect("new handler");
    assert_eq!(
        (resolved.service.revision, resolved.deployment.id),
        (2, id(2))
    );
    // ...while invocations pinned to the old deployment still find it and its schema.
    let pinned = registry
        .resolve_pinned(&id(1), "Counter", "add")
        .expect("pinned");
    assert_eq!(pinned.deployment.uri, A);
    assert_eq!(pinned.service.revision, 1);
    assert!(
        registry
            .resolve_pinned(&id(1), "Counter", "reset")
            .is_none()
    );
    // The superseded deployment is no fallback: the endpoint no longer serves it.
    let revisions: Vec<u32> = registry
        .revisions("Counter")
        .iter()
        .map(|s| s.revision)
        .collect();
    assert_eq!(revisions, [2]);
    let listed: Vec<DeploymentId> = registry.deployments().iter().map(|d| d.id).collect();
    assert_eq!(listed, [id(1), id(2)]);
}

#[test]
fn revisions_increment_per_service_across_uris() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter()]), false),
    );
    assert_eq!(newest(&registry, "Greeter"), (2, id(2)));
    assert_eq!(newest(&registry, "Counter"), (1, id(1)));
    ok(
        &mut registry,
        &register(3, A, manifest(vec![counter(), greeter(), signup()]), true),
    );
    assert_eq!(newest(&registry, "Greeter"), (3, id(3)));
    assert_eq!(newest(&registry, "Counter"), (2, id(3)));
    assert_eq!(newest(&registry, "Signup"), (1, id(3)));
    // Greeter's history: B's revision 2 (current at B) and A's revision 3; A's revision 1 was
    // superseded.
    let history: Vec<(u32, DeploymentId)> = registry
        .revisions("Greeter")
        .iter()
        .map(|s| (s.revision, s.deployment_id))
        .collect();
    assert_eq!(history, [(2, id(2)), (3, id(3))]);
}

#[test]
fn a_replayed_proposal_changes_nothing_the_second_time() {
    for force in [false, true] {
        let mut registry = Registry::new();
        ok(
            &mut registry,
            &register(1, A, manifest(vec![greeter()]), false),
        );
        let command = register(2, A, manifest(vec![greeter(), counter()]), force);
        assert_eq!(ok(&mut registry, &command), Applied::Registered(id(2)));
        let before = registry.clone();
        assert_eq!(
            ok(&mut registry, &command),
            Applied::AlreadyRegistered(id(2))
        );
        assert_eq!(registry, before);
    }
}

#[test]
fn check_answers_for_the_registry_as_it_is_now() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter()]), false),
    );
    let command = register(2, B, manifest(vec![greeter()]), false);
    assert_eq!(registry.check(&command), Ok(()));
    // A command committed first may make the checked one conflict when it is applied.
    let object = service(
        "Greeter",
        ServiceType::Object,
        &[("greet", HandlerKind::Shared)],
    );
    ok(
        &mut registry,
        &register(3, A, manifest(vec![counter(), object]), false),
    );
    assert!(matches!(
        refused(&mut registry, &command),
        Refusal::Conflict(_)
    ));
}

#[test]
fn changing_the_type_of_a_live_service_is_a_conflict_unless_forced() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter()]), false),
    );
    let stateless = service(
        "Counter",
        ServiceType::Service,
        &[("add", HandlerKind::Shared), ("get", HandlerKind::Shared)],
    );
    // At another uri as well as at the same one.
    for (seed, uri) in [(2, B), (3, A)] {
        let refusal = refused(
            &mut registry,
            &register(seed, uri, manifest(vec![stateless.clone()]), false),
        );
        assert_eq!(refusal.http_status(), 409);
        assert_eq!(
            conflicts(refusal),
            [Conflict::ServiceType {
                service: "Counter".into(),
                from: ServiceType::Object,
                to: ServiceType::Service,
            }]
        );
    }
    ok(
        &mut registry,
        &register(2, B, manifest(vec![stateless]), true),
    );
    let live = registry.service("Counter").expect("live");
    assert_eq!((live.ty, live.revision), (ServiceType::Service, 2));
}

#[test]
fn dropping_a_service_or_handler_at_the_same_uri_is_a_conflict_unless_forced() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    let shrunk = service(
        "Counter",
        ServiceType::Object,
        &[("add", HandlerKind::Exclusive)],
    );
    let command = register(2, A, manifest(vec![shrunk.clone()]), false);
    let refusal = refused(&mut registry, &command);
    assert_eq!(
        conflicts(refusal.clone()),
        [
            Conflict::HandlerRemoved {
                service: "Counter".into(),
                handler: "get".into(),
                uri: A.into(),
            },
            Conflict::ServiceRemoved {
                service: "Greeter".into(),
                uri: A.into(),
            },
        ]
    );
    assert!(
        refusal
            .to_string()
            .ends_with("set force to apply it anyway"),
        "{refusal}"
    );

    ok(&mut registry, &register(2, A, manifest(vec![shrunk]), true));
    assert!(registry.resolve("Counter", "get").is_none());
    assert_eq!(newest(&registry, "Counter"), (2, id(2)));
    // Greeter had no other revision: it is gone for new invocations, pinned ones still find it.
    assert!(registry.service("Greeter").is_none());
    assert!(
        registry
            .resolve_pinned(&id(1), "Greeter", "greet")
            .is_some()
    );
}

#[test]
fn a_forced_drop_at_one_uri_falls_back_to_the_revision_at_another() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, B, manifest(vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, A, manifest(vec![greeter(), counter()]), false),
    );
    assert_eq!(newest(&registry, "Greeter"), (2, id(2)));
    let command = register(3, A, manifest(vec![counter()]), false);
    assert_eq!(
        conflicts(refused(&mut registry, &command)),
        [Conflict::ServiceRemoved {
            service: "Greeter".into(),
            uri: A.into(),
        }]
    );
    ok(
        &mut registry,
        &register(3, A, manifest(vec![counter()]), true),
    );
    assert_eq!(newest(&registry, "Greeter"), (1, id(1)));
}

#[test]
fn dropping_a_service_another_uri_took_over_is_no_conflict() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter(), counter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter()]), false),
    );
    // Greeter's newest revision is at B, so A dropping it removes nothing live.
    ok(
        &mut registry,
        &register(3, A, manifest(vec![counter()]), false),
    );
    assert_eq!(newest(&registry, "Greeter"), (2, id(2)));
    assert_eq!(newest(&registry, "Counter"), (2, id(3)));
    // And A's old Greeter revision is no fallback any more.
    let history: Vec<u32> = registry
        .revisions("Greeter")
        .iter()
        .map(|s| s.revision)
        .collect();
    assert_eq!(history, [2]);
}

#[test]
fn removing_handlers_at_a_new_uri_is_allowed() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter()]), false),
    );
    let shrunk = service(
        "Counter",
        ServiceType::Object,
        &[("add", HandlerKind::Exclusive)],
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![shrunk]), false),
    );
    assert!(registry.resolve("Counter", "get").is_none());
    assert!(registry.resolve_pinned(&id(1), "Counter", "get").is_some());
}

#[test]
fn removing_the_newest_revision_is_a_conflict_unless_forced() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter(), counter()]), false),
    );
    let refusal = refused(&mut registry, &remove(2, false));
    assert_eq!(refusal.http_status(), 409);
    assert_eq!(
        conflicts(refusal),
        [Conflict::DeploymentInUse {
            id: id(2),
            services: vec!["Counter".into(), "Greeter".into()],
        }]
    );
    assert_eq!(
        ok(&mut registry, &remove(2, true)),
        Applied::Removed {
            id: id(2),
            fell_back: vec!["Greeter".into()],
            disappeared: vec!["Counter".into()],
        }
    );
    assert!(registry.deployment(&id(2)).is_none());
    assert_eq!(newest(&registry, "Greeter"), (1, id(1)));
    assert_eq!(
        registry
            .resolve("Greeter", "greet")
            .map(|r| r.deployment.id),
        Some(id(1))
    );
    assert!(registry.resolve("Counter", "add").is_none());
    assert!(registry.current_at(B).is_none());
    let names: Vec<&str> = registry
        .services()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["Greeter"]);
}

#[test]
fn removing_a_deployment_that_serves_no_newest_revision_needs_no_force() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter()]), false),
    );
    // A is current but Greeter's newest revision is at B.
    assert_eq!(
        ok(&mut registry, &remove(1, false)),
        Applied::Removed {
            id: id(1),
            fell_back: vec![],
            disappeared: vec![],
        }
    );
    let history: Vec<u32> = registry
        .revisions("Greeter")
        .iter()
        .map(|s| s.revision)
        .collect();
    assert_eq!(history, [2]);
    // A superseded deployment never serves a newest revision.
    ok(
        &mut registry,
        &register(3, B, manifest(vec![greeter()]), true),
    );
    ok(&mut registry, &remove(2, false));
    assert_eq!(newest(&registry, "Greeter"), (3, id(3)));
}

#[test]
fn removing_an_unknown_deployment_is_not_found() {
    let mut registry = Registry::new();
    let refusal = refused(&mut registry, &remove(9, true));
    assert_eq!(refusal, Refusal::UnknownDeployment(id(9)));
    assert_eq!(refusal.http_status(), 404);
}

#[test]
fn a_uri_whose_deployment_was_removed_registers_afresh() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    ok(&mut registry, &remove(1, true));
    assert!(registry.service("Greeter").is_none());
    let applied = ok(
        &mut registry,
        &register(2, A, manifest(vec![greeter()]), false),
    );
    assert_eq!(applied, Applied::Registered(id(2)));
    // Revision numbers are never reused, even after the service was gone.
    assert_eq!(newest(&registry, "Greeter"), (2, id(2)));
}

#[test]
fn revision_numbers_are_not_reused_after_a_forced_removal() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter()]), false),
    );
    ok(&mut registry, &remove(2, true));
    assert_eq!(newest(&registry, "Greeter"), (1, id(1)));
    ok(
        &mut registry,
        &register(3, B, manifest(vec![greeter()]), false),
    );
    assert_eq!(newest(&registry, "Greeter"), (3, id(3)));
}

#[test]
fn deployment_ids_are_derived_from_the_seed() {
    let mut one = Registry::new();
    let mut two = Registry::new();
    let seed = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let command = register(seed, A, manifest(vec![greeter()]), false);
    assert_eq!(ok(&mut one, &command), ok(&mut two, &command));
    assert_eq!(
        one.services()[0].deployment_id,
        DeploymentId::from_seed(seed)
    );
    assert_eq!(one, two);
}

#[test]
fn a_seed_already_used_is_refused() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    let refusal = refused(
        &mut registry,
        &register(1, B, manifest(vec![counter()]), false),
    );
    assert_eq!(refusal, Refusal::IdTaken(id(1)));
}

#[test]
fn malformed_registrations_are_refused() {
    let base = manifest(vec![greeter()]);
    let mut registry = Registry::new();
    ok(&mut registry, &register(1, A, base.clone(), false));

    let cases: Vec<(Manifest, Invalid)> = vec![
        (manifest(vec![]), Invalid::NoServices),
        (
            Manifest {
                min_protocol_version: 2,
                ..base.clone()
            },
            Invalid::ProtocolRange { min: 2, max: 1 },
        ),
        (
            Manifest {
                protocol_modes: vec![],
                ..base.clone()
            },
            Invalid::NoProtocolMode,
        ),
        (
            manifest(vec![greeter(), greeter()]),
            Invalid::DuplicateService("Greeter".into()),
        ),
        (
            manifest(vec![service("Bad/name", ServiceType::Service, &[])]),
            Invalid::Name("Bad/name".into()),
        ),
        (
            manifest(vec![service(
                "S",
                ServiceType::Service,
                &[("", HandlerKind::Shared)],
            )]),
            Invalid::Name(String::new()),
        ),
        (
            manifest(vec![service(
                "S",
                ServiceType::Service,
                &[("h", HandlerKind::Shared), ("h", HandlerKind::Shared)],
            )]),
            Invalid::DuplicateHandler {
                service: "S".into(),
                handler: "h".into(),
            },
        ),
        (
            manifest(vec![service(
                "S",
                ServiceType::Service,
                &[("h", HandlerKind::Exclusive)],
            )]),
            Invalid::HandlerKind {
                service: "S".into(),
                handler: "h".into(),
                kind: HandlerKind::Exclusive,
                ty: ServiceType::Service,
            },
        ),
        (
            manifest(vec![service(
                "O",
                ServiceType::Object,
                &[("h", HandlerKind::Workflow)],
            )]),
            Invalid::HandlerKind {
                service: "O".into(),
                handler: "h".into(),
                kind: HandlerKind::Workflow,
                ty: ServiceType::Object,
            },
        ),
        (
            manifest(vec![service(
                "W",
                ServiceType::Workflow,
                &[("s", HandlerKind::Shared)],
            )]),
            Invalid::WorkflowHandlers {
                service: "W".into(),
                count: 0,
            },
        ),
        (
            manifest_from("", vec![greeter()]),
            Invalid::SdkVersion(String::new()),
        ),
        (
            manifest_from(&"x".repeat(129), vec![greeter()]),
            Invalid::SdkVersion("x".repeat(129)),
        ),
        (
            manifest_from("sdk/1.0\n", vec![greeter()]),
            Invalid::SdkVersion("sdk/1.0\n".into()),
        ),
        (
            manifest_from("sdk-é/1.0", vec![greeter()]),
            Invalid::SdkVersion("sdk-é/1.0".into()),
        ),
    ];
    for (bad, reason) in cases {
        let refusal = refused(&mut registry, &register(2, B, bad, true));
        assert_eq!(refusal, Refusal::Invalid(reason));
        assert_eq!(refusal.http_status(), 400);
    }
    let empty_uri = register(2, "", manifest(vec![greeter()]), false);
    assert_eq!(
        refused(&mut registry, &empty_uri),
        Refusal::Invalid(Invalid::EmptyUri)
    );
}

#[test]
fn operator_settings_apply_to_the_service_and_its_later_revisions() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest(vec![greeter()]), false),
    );
    let patch = ServicePatch {
        public: Some(false),
        inactivity_timeout: Some(Millis(5_000)),
        ..ServicePatch::default()
    };
    let modify = RegistryCommand::ModifyService {
        service: "Greeter".into(),
        patch,
    };
    assert_eq!(
        ok(&mut registry, &modify),
        Applied::ServiceModified("Greeter".into())
    );
    let resolved = registry.resolve("Greeter", "greet").expect("resolves");
    assert!(!resolved.is_public());
    assert_eq!(resolved.service.inactivity_timeout, Some(Millis(5_000)));
    assert_eq!(resolved.service.abort_timeout, None);

    // A later revision inherits the settings...
    ok(
        &mut registry,
        &register(3, B, manifest(vec![greeter()]), true),
    );
    let live = registry.service("Greeter").expect("live");
    assert_eq!(
        (live.revision, live.public, live.inactivity_timeout),
        (3, false, Some(Millis(5_000)))
    );
    // ...and so does a fallback revision.
    ok(&mut registry, &remove(3, true));
    let live = registry.service("Greeter").expect("fell back");
    assert_eq!((live.revision, live.public), (1, false));
    // Once the service is gone its settings go too.
    ok(&mut registry, &remove(1, true));
    ok(
        &mut registry,
        &register(4, A, manifest(vec![greeter()]), false),
    );
    assert!(registry.service("Greeter").expect("back").public);
}

#[test]
fn modifying_an_unknown_service_or_a_non_workflow_retention_is_refused() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter(), signup()]), false),
    );
    let unknown = RegistryCommand::ModifyService {
        service: "Nope".into(),
        patch: ServicePatch::default(),
    };
    let refusal = refused(&mut registry, &unknown);
    assert_eq!(refusal, Refusal::UnknownService("Nope".into()));
    assert_eq!(refusal.http_status(), 404);

    let retention = ServicePatch {
        workflow_completion_retention: Some(Millis::HOUR),
        ..ServicePatch::default()
    };
    let not_workflow = RegistryCommand::ModifyService {
        service: "Greeter".into(),
        patch: retention,
    };
    assert_eq!(
        refused(&mut registry, &not_workflow),
        Refusal::Invalid(Invalid::NotAWorkflow("Greeter".into()))
    );
    let workflow = RegistryCommand::ModifyService {
        service: "Signup".into(),
        patch: retention,
    };
    ok(&mut registry, &workflow);
    assert_eq!(
        registry
            .service("Signup")
            .and_then(|s| s.workflow_completion_retention),
        Some(Millis::HOUR)
    );
}

/// A log with accepted and refused commands, as a metadata log may hold.
fn history() -> Vec<RegistryCommand> {
    let modify = RegistryCommand::ModifyService {
        service: "Greeter".into(),
        patch: ServicePatch {
            public: Some(false),
            ..ServicePatch::default()
        },
    };
    vec![
        register(1, A, manifest(vec![counter(), greeter()]), false),
        register(2, A, manifest(vec![greeter()]), false),
        register(3, B, manifest(vec![greeter(), signup()]), false),
        modify,
        remove(3, false),
        register(4, A, manifest(vec![counter(), greeter()]), false),
        register(5, A, manifest(vec![counter()]), true),
        remove(9, true),
    ]
}

#[test]
fn replaying_the_same_log_yields_the_same_registry() {
    let mut one = Registry::new();
    let mut two = Registry::new();
    for command in history() {
        assert_eq!(one.apply(&command), two.apply(&command));
    }
    assert_eq!(one, two);
    assert_eq!(newest(&one, "Counter"), (2, id(5)));
    assert_eq!(newest(&one, "Greeter"), (2, id(3)));
}

#[test]
fn the_registry_survives_a_snapshot_round_trip() {
    let mut registry = Registry::new();
    for command in history() {
        let _outcome = registry.apply(&command);
    }
    let bytes = codec::encode(&registry).expect("encode");
    let restored: Registry = codec::decode(&bytes).expect("decode");
    assert_eq!(restored, registry);
    let json = serde_json::to_string(&registry).expect("json");
    let restored: Registry = serde_json::from_str(&json).expect("from json");
    assert_eq!(restored, registry);
    // The restored registry keeps applying commands the same way.
    let mut restored = restored;
    let next = register(6, B, manifest(vec![greeter()]), false);
    assert_eq!(restored.apply(&next), registry.apply(&next));
    assert_eq!(restored, registry);
}

#[test]
fn views_have_the_admin_api_shapes() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    let greeter = registry.service("Greeter").expect("greeter");
    let json = serde_json::to_value(views::service(greeter, &crate::AttemptPolicy::default()))
        .expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "name": "Greeter",
            "ty": "Service",
            "handlers": [{
                "name": "greet",
                "public": true,
                "input_description": "application/json",
                "output_description": "application/json",
                "retry_policy": {
                    "initial_interval": null,
                    "exponentiation_factor": null,
                    "max_attempts": null,
                    "max_interval": null,
                    "on_max_attempts": null
                }
            }],
            "deployment_id": "dp_101SZwviYzes2mjOamuMJWw",
            "revision": 1,
            "public": true,
            "idempotency_retention": "1d",
            "journal_retention": "1d",
            "inactivity_timeout": "1m",
            "abort_timeout": "10m",
            "retry_policy": {
                "initial_interval": "50ms",
                "exponentiation_factor": 2.0,
                "max_attempts": 70,
                "max_interval": "1m",
                "on_max_attempts": "Pause"
            }
        })
    );
    let counter = serde_json::to_value(views::service_list(
        &registry,
        &crate::AttemptPolicy::default(),
    ))
    .expect("json");
    assert_eq!(counter["services"][0]["ty"], "VirtualObject");
    assert_eq!(counter["services"][0]["handlers"][0]["ty"], "Exclusive");
    assert_eq!(counter["services"][1]["name"], "Greeter");

    let list = serde_json::to_value(views::deployment_list(&registry)).expect("json");
    assert_eq!(
        list,
        serde_json::json!({
            "deployments": [{
                "id": "dp_101SZwviYzes2mjOamuMJWw",
                "uri": A,
                "protocol_type": "BidiStream",
                "http_version": "HTTP/2.0",
                "created_at": "2023-11-14T22:13:20.001Z",
                "min_protocol_version": 1,
                "max_protocol_version": 1,
                "services": [
                    {"name": "Counter", "revision": 1},
                    {"name": "Greeter", "revision": 1}
                ]
            }]
        })
    );
    let deployment = registry.deployment(&id(1)).expect("deployment");
    let detail = serde_json::to_value(views::deployment_detail(
        deployment,
        &crate::AttemptPolicy::default(),
    ))
    .expect("json");
    assert_eq!(detail["services"][1]["handlers"][0]["name"], "greet");
    let registered = serde_json::to_value(views::registration(
        deployment,
        &crate::AttemptPolicy::default(),
    ))
    .expect("json");
    assert_eq!(registered["id"], "dp_101SZwviYzes2mjOamuMJWw");
    assert_eq!(registered["services"].as_array().map(Vec::len), Some(2));
    assert_eq!(registered["max_protocol_version"], 1);
}

#[test]
fn the_sdk_version_is_kept_and_shown_in_the_deployment_views() {
    let mut registry = Registry::new();
    let longest = "v".repeat(128);
    ok(
        &mut registry,
        &register(1, A, manifest_from(SDK, vec![greeter()]), false),
    );
    ok(
        &mut registry,
        &register(2, B, manifest_from(&longest, vec![counter()]), false),
    );
    let deployment = registry.deployment(&id(1)).expect("deployment");
    assert_eq!(deployment.sdk_version.as_deref(), Some(SDK));
    assert_eq!(
        registry
            .deployment(&id(2))
            .and_then(|d| d.sdk_version.as_deref()),
        Some(longest.as_str())
    );

    let list = serde_json::to_value(views::deployment_list(&registry)).expect("json");
    assert_eq!(list["deployments"][0]["sdk_version"], SDK);
    assert_eq!(list["deployments"][1]["sdk_version"], longest.as_str());
    let detail = serde_json::to_value(views::deployment_detail(
        deployment,
        &crate::AttemptPolicy::default(),
    ))
    .expect("json");
    assert_eq!(detail["sdk_version"], SDK);

    // Without one, the views omit the field (as the shapes above show for the list).
    let mut without = Registry::new();
    ok(
        &mut without,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    let detail = serde_json::to_value(views::deployment_detail(
        without.deployment(&id(1)).expect("deployment"),
        &crate::AttemptPolicy::default(),
    ))
    .expect("json");
    assert!(detail.get("sdk_version").is_none(), "{detail}");
}

#[test]
fn a_new_sdk_version_at_the_same_uri_is_a_new_deployment() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest_from(SDK, vec![greeter()]), false),
    );
    // The same manifest and SDK version again: the same deployment.
    let again = register(2, A, manifest_from(SDK, vec![greeter()]), false);
    assert_eq!(ok(&mut registry, &again), Applied::AlreadyRegistered(id(1)));
    // Only the SDK version changed: the endpoint was upgraded.
    let upgraded = register(
        3,
        A,
        manifest_from("holdfast-sdk-typescript/0.2.0", vec![greeter()]),
        false,
    );
    assert_eq!(ok(&mut registry, &upgraded), Applied::Registered(id(3)));
    assert_eq!(newest(&registry, "Greeter"), (2, id(3)));
    assert_eq!(
        registry.deployment(&id(1)).and_then(|d| d.superseded_by),
        Some(id(3))
    );
    // Dropping the SDK version is a change too.
    let dropped = register(4, A, manifest(vec![greeter()]), false);
    assert_eq!(ok(&mut registry, &dropped), Applied::Registered(id(4)));
    assert_eq!(
        registry.deployment(&id(4)).map(|d| d.sdk_version.clone()),
        Some(None)
    );
}

#[test]
fn workflow_views_carry_their_completion_retention() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![signup()]), false),
    );
    let signup = registry.service("Signup").expect("signup");
    let json = serde_json::to_value(views::service(signup, &crate::AttemptPolicy::default()))
        .expect("json");
    assert_eq!(json["ty"], "Workflow");
    assert_eq!(json["workflow_completion_retention"], "1d");
    assert_eq!(json["handlers"][0]["ty"], "Workflow");
    assert_eq!(json["handlers"][1]["ty"], "Shared");
}

#[test]
fn refusals_render_as_error_bodies() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter()]), false),
    );
    let refusal = refused(&mut registry, &remove(1, false));
    let body = views::error(&refusal);
    assert_eq!(body.code, "conflict");
    assert_eq!(
        body.message,
        "deployment dp_101SZwviYzes2mjOamuMJWw serves the newest revision of Greeter; \
         set force to apply it anyway"
    );
}

/// A counter whose manifest declares retry and timeout settings for the service and for `add`.
fn counter_with_overrides(service_attempts: u32) -> Service {
    let mut service = counter();
    service.retry_policy = Some(manifest::RetryPolicy {
        max_attempts: Some(service_attempts),
        factor: Some(1.5),
        ..manifest::RetryPolicy::default()
    });
    service.inactivity_timeout_ms = Some(2_000);
    if let Some(add) = service.handlers.iter_mut().find(|h| h.name == "add") {
        add.retry_policy = Some(manifest::RetryPolicy {
            initial_interval_ms: Some(10),
            on_max_attempts: Some(manifest::OnMaxAttempts::Kill),
            ..manifest::RetryPolicy::default()
        });
        add.abort_timeout_ms = Some(3_000);
    }
    service
}

#[test]
fn manifest_overrides_are_stored_and_resolved_over_the_node_configuration() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter_with_overrides(3)]), false),
    );
    let counter = registry.service("Counter").expect("counter");
    assert_eq!(counter.retry_policy.max_attempts, Some(3));
    assert_eq!(counter.retry_policy.exponentiation_factor, Some(1.5));
    assert_eq!(counter.retry_policy.initial_interval, None);
    assert_eq!(counter.inactivity_timeout, Some(Millis(2_000)));
    assert_eq!(counter.abort_timeout, None);

    let node = crate::AttemptPolicy {
        retry: crate::RetryPolicy {
            initial_interval_ms: 100,
            max_interval_ms: 5_000,
            ..crate::RetryPolicy::default()
        },
        inactivity_timeout: Millis(9_000),
        abort_timeout: Millis(9_500),
    };
    let add = registry.resolve("Counter", "add").expect("add");
    let policy = add.service.attempt_policy(add.handler, &node);
    assert_eq!(
        policy.retry,
        crate::RetryPolicy {
            initial_interval_ms: 10,
            factor: 1.5,
            max_interval_ms: 5_000,
            max_attempts: 3,
            on_max_attempts: crate::OnMaxAttempts::Kill,
        }
    );
    assert_eq!(policy.inactivity_timeout, Millis(2_000));
    assert_eq!(policy.abort_timeout, Millis(3_000));

    let get = registry.resolve("Counter", "get").expect("get");
    let policy = get.service.attempt_policy(get.handler, &node);
    assert_eq!(policy.retry.initial_interval_ms, 100);
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!(policy.retry.on_max_attempts, crate::OnMaxAttempts::Pause);
    assert_eq!(policy.abort_timeout, Millis(9_500));

    // The service view shows the effective service-level values.
    let view = serde_json::to_value(views::service(counter, &node)).expect("json");
    assert_eq!(view["inactivity_timeout"], "2s");
    assert_eq!(view["abort_timeout"], "9s 500ms");
    assert_eq!(view["retry_policy"]["max_attempts"], 3);
    assert_eq!(view["retry_policy"]["initial_interval"], "100ms");
    assert_eq!(
        view["handlers"][0]["retry_policy"]["on_max_attempts"],
        "Kill"
    );
}

#[test]
fn changed_overrides_make_a_new_revision_and_unchanged_ones_do_not() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter_with_overrides(3)]), false),
    );
    ok(
        &mut registry,
        &register(2, A, manifest(vec![counter_with_overrides(3)]), false),
    );
    assert_eq!(registry.service("Counter").map(|s| s.revision), Some(1));
    ok(
        &mut registry,
        &register(3, A, manifest(vec![counter_with_overrides(4)]), false),
    );
    let counter = registry.service("Counter").expect("counter");
    assert_eq!(
        (counter.revision, counter.retry_policy.max_attempts),
        (2, Some(4))
    );
}

/// Changes a service's declarations for one refusal case.
type Change = Box<dyn Fn(&mut Service)>;

#[test]
fn unusable_overrides_are_refused() {
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|s| {
                s.retry_policy = Some(manifest::RetryPolicy {
                    factor: Some(0.5),
                    ..manifest::RetryPolicy::default()
                })
            }),
            "retry_policy.factor",
        ),
        (
            Box::new(|s| {
                s.retry_policy = Some(manifest::RetryPolicy {
                    max_attempts: Some(0),
                    ..manifest::RetryPolicy::default()
                })
            }),
            "retry_policy.max_attempts",
        ),
        (
            Box::new(|s| {
                s.retry_policy = Some(manifest::RetryPolicy {
                    initial_interval_ms: Some(10),
                    max_interval_ms: Some(5),
                    ..manifest::RetryPolicy::default()
                })
            }),
            "retry_policy.initial_interval_ms",
        ),
        (
            Box::new(|s| {
                if let Some(h) = s.handlers.first_mut() {
                    h.inactivity_timeout_ms = Some(0);
                }
            }),
            "inactivity_timeout_ms",
        ),
    ];
    for (change, field) in cases {
        let mut service = counter();
        change(&mut service);
        let mut registry = Registry::new();
        let refusal = refused(
            &mut registry,
            &register(1, A, manifest(vec![service]), false),
        );
        match refusal {
            Refusal::Invalid(Invalid::Setting { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: unexpected {other:?}"),
        }
    }
}

#[test]
fn registries_stored_before_overrides_existed_still_decode() {
    // A service schema as stored before: concrete timeouts and a full retry policy.
    let old = serde_json::json!({
        "inactivity_timeout": 60_000,
        "abort_timeout": 600_000,
        "retry_policy": {
            "initial_interval": 50,
            "exponentiation_factor": 2.0,
            "max_interval": 60_000,
            "max_attempts": 70,
            "on_max_attempts": "Pause"
        }
    });
    #[derive(serde::Deserialize)]
    struct Part {
        inactivity_timeout: Option<Millis>,
        retry_policy: crate::RetryOverrides,
    }
    let bytes = codec::encode(&old).expect("encode");
    let part: Part = codec::decode(&bytes).expect("decode");
    assert_eq!(part.inactivity_timeout, Some(Millis(60_000)));
    assert_eq!(part.retry_policy.max_attempts, Some(70));
    assert_eq!(
        part.retry_policy.on_max_attempts,
        Some(crate::OnMaxAttempts::Pause)
    );
}

#[test]
fn deployments_stored_before_sdk_versions_existed_still_decode() {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![counter(), greeter()]), false),
    );
    // A deployment record as stored before: no `sdk_version` field at all.
    let deployment = registry.deployment(&id(1)).expect("deployment").clone();
    let old = serde_json::to_value(&deployment).expect("json");
    assert!(old.get("sdk_version").is_none(), "{old}");
    let bytes = codec::encode(&old).expect("encode");
    let decoded: Deployment = codec::decode(&bytes).expect("decode");
    assert_eq!(decoded, deployment);
    assert_eq!(decoded.sdk_version, None);
    // A whole registry too, and one with the field round-trips it.
    let bytes = codec::encode(&serde_json::to_value(&registry).expect("json")).expect("encode");
    let decoded: Registry = codec::decode(&bytes).expect("decode");
    assert_eq!(decoded, registry);
    ok(
        &mut registry,
        &register(2, B, manifest_from(SDK, vec![signup()]), false),
    );
    let bytes = codec::encode(&registry).expect("encode");
    let decoded: Registry = codec::decode(&bytes).expect("decode");
    assert_eq!(decoded, registry);
    assert_eq!(
        decoded
            .deployment(&id(2))
            .and_then(|d| d.sdk_version.as_deref()),
        Some(SDK)
    );
}

fn nightly() -> Schedule {
    Schedule {
        name: "nightly".into(),
        service: "Counter".into(),
        handler: "add".into(),
        key: Some("k".into()),
        input: Some(b"1".to_vec()),
        spec: crate::ScheduleSpec::Cron {
            expression: "0 3 * * *".into(),
            zone: "Europe/Berlin".into(),
        },
        catch_up: holdfast_schedule::CatchUp::Latest,
        overlap: holdfast_types::Overlap::Queue,
        paused: false,
        since: Timestamp(5),
        created_at: Timestamp(5),
        updated_at: Timestamp(5),
        declared: false,
    }
}

fn put(schedule: Schedule, create: bool) -> RegistryCommand {
    RegistryCommand::PutSchedule { schedule, create }
}

fn with_services() -> Registry {
    let mut registry = Registry::new();
    ok(
        &mut registry,
        &register(1, A, manifest(vec![greeter(), counter(), signup()]), false),
    );
    registry
}

#[test]
fn a_schedule_is_created_replaced_and_removed() {
    let mut registry = with_services();
    assert_eq!(
        ok(&mut registry, &put(nightly(), true)),
        Applied::SchedulePut {
            name: "nightly".into(),
            created: true
        }
    );
    assert_eq!(registry.schedule("nightly"), Some(&nightly()));
    let paused = Schedule {
        paused: true,
        ..nightly()
    };
    assert_eq!(
        ok(&mut registry, &put(paused.clone(), false)),
        Applied::SchedulePut {
            name: "nightly".into(),
            created: false
        }
    );
    assert_eq!(registry.schedules().collect::<Vec<_>>(), [&paused]);
    let remove = RegistryCommand::RemoveSchedule {
        name: "nightly".into(),
    };
    assert_eq!(
        ok(&mut registry, &remove),
        Applied::ScheduleRemoved("nightly".into())
    );
    assert_eq!(registry.schedule("nightly"), None);
    assert_eq!(
        refused(&mut registry, &remove),
        Refusal::UnknownSchedule("nightly".into())
    );
}

#[test]
fn creating_a_taken_name_or_replacing_an_unknown_one_is_refused() {
    let mut registry = with_services();
    assert_eq!(
        refused(&mut registry, &put(nightly(), false)).http_status(),
        404
    );
    ok(&mut registry, &put(nightly(), true));
    let refusal = refused(&mut registry, &put(nightly(), true));
    assert_eq!(refusal, Refusal::ScheduleExists("nightly".into()));
    assert_eq!(
        (refusal.http_status(), refusal.code()),
        (409, "schedule_exists")
    );
}

#[test]
fn an_invalid_schedule_is_refused_with_the_reason() {
    let mut registry = with_services();
    let cases = [
        (
            Schedule {
                name: "a b".into(),
                ..nightly()
            },
            "schedule name \"a b\" is not",
        ),
        (
            Schedule {
                spec: crate::ScheduleSpec::Cron {
                    expression: "61 * * * *".into(),
                    zone: "UTC".into(),
                },
                ..nightly()
            },
            "cron minute field `61`: 61 is outside 0-59",
        ),
        (
            Schedule {
                spec: crate::ScheduleSpec::Cron {
                    expression: "@daily".into(),
                    zone: "Europe/Atlantis".into(),
                },
                ..nightly()
            },
            "unknown time zone `Europe/Atlantis`",
        ),
        (
            Schedule {
                spec: crate::ScheduleSpec::Every { period: Millis(0) },
                ..nightly()
            },
            "interval of 0 ms",
        ),
        (
            Schedule {
                catch_up: holdfast_schedule::CatchUp::All { max: 0 },
                ..nightly()
            },
            "catch_up all of 0 ticks",
        ),
        (
            Schedule {
                service: "Nope".into(),
                ..nightly()
            },
            "service 'Nope' not found",
        ),
        (
            Schedule {
                handler: "nope".into(),
                ..nightly()
            },
            "service 'Counter' has no handler 'nope'",
        ),
        (
            Schedule {
                key: None,
                ..nightly()
            },
            "'Counter' is keyed: a schedule of it needs a key",
        ),
        (
            Schedule {
                service: "Greeter".into(),
                handler: "greet".into(),
                ..nightly()
            },
            "service 'Greeter' is a stateless service: a schedule of it takes no key",
        ),
    ];
    for (schedule, expected) in cases {
        let refusal = refused(&mut registry, &put(schedule, true));
        assert_eq!(refusal.http_status(), 400);
        assert!(
            refusal.to_string().contains(expected),
            "{refusal} lacks {expected:?}"
        );
    }
}

#[test]
fn schedules_survive_a_snapshot_and_older_snapshots_have_none() {
    let mut registry = with_services();
    ok(&mut registry, &put(nightly(), true));
    let bytes = codec::encode(&registry).expect("encode");
    assert_eq!(codec::decode::<Registry>(&bytes).expect("decode"), registry);
    let without = with_services();
    assert_eq!(without.schedules().count(), 0);
}

/// `Counter` whose `add` declares `schedules`.
fn counter_declaring(schedules: Vec<manifest::HandlerSchedule>) -> Service {
    let mut service = counter();
    service.handlers[0].schedules = schedules;
    service
}

fn every(ms: u64, key: &str) -> manifest::HandlerSchedule {
    manifest::HandlerSchedule {
        every_ms: Some(ms),
        key: Some(key.into()),
        input: Some(serde_json::json!(1)),
        ..manifest::HandlerSchedule::default()
    }
}

#[test]
fn schedules_declared_in_code_follow_the_newest_revision() {
    let mut registry = Registry::default();
    let hourly = manifest::HandlerSchedule {
        name: Some("hourly".into()),
        cron: Some("@hourly".into()),
        timezone: Some("Europe/Berlin".into()),
        key: Some("h".into()),
        overlap: Some("queue".into()),
        catch_up: Some("all".into()),
        ..manifest::HandlerSchedule::default()
    };
    let first = counter_declaring(vec![every(1000, "a"), hourly.clone()]);
    ok(&mut registry, &register(1, A, manifest(vec![first]), false));
    let names: Vec<&str> = registry.schedules().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Counter.add", "hourly"]);
    let tick = registry.schedule("Counter.add").cloned().expect("declared");
    assert!(tick.declared);
    assert_eq!(tick.input.as_deref(), Some(b"1".as_slice()));
    assert_eq!(tick.since, Timestamp(1_700_000_000_001));
    let hour = registry.schedule("hourly").expect("declared");
    assert_eq!(hour.overlap, holdfast_types::Overlap::Queue);
    assert_eq!(hour.catch_up, holdfast_schedule::CatchUp::All { max: 10 });

    // An operator pauses one; a new revision with the same declaration keeps it paused and its
    // ticks' start; a changed spec restarts them; a schedule no longer declared goes.
    let mut paused = tick.clone();
    paused.paused = true;
    ok(&mut registry, &put(paused, false));
    let second = counter_declaring(vec![every(1000, "a")]);
    ok(
        &mut registry,
        &register(2, A, manifest(vec![second]), false),
    );
    let kept = registry.schedule("Counter.add").expect("kept");
    assert!(kept.paused && kept.since == tick.since);
    assert!(registry.schedule("hourly").is_none());
    let third = counter_declaring(vec![every(2000, "a")]);
    ok(&mut registry, &register(3, A, manifest(vec![third]), false));
    let changed = registry.schedule("Counter.add").expect("changed");
    assert_eq!(changed.since, Timestamp(1_700_000_000_003));
    assert!(changed.paused, "still paused by the operator");

    // Removing the service's last deployment removes what it declared; runtime schedules stay.
    ok(&mut registry, &put(nightly(), true));
    ok(&mut registry, &remove(3, true));
    let left: Vec<&str> = registry.schedules().map(|s| s.name.as_str()).collect();
    assert_eq!(left, ["nightly"]);
}

#[test]
fn a_bad_or_doubled_declared_schedule_refuses_the_registration() {
    let mut registry = Registry::default();
    let cases = [
        manifest::HandlerSchedule::default(),
        manifest::HandlerSchedule {
            cron: Some("61 * * * *".into()),
            key: Some("k".into()),
            ..manifest::HandlerSchedule::default()
        },
        manifest::HandlerSchedule {
            cron: Some("@daily".into()),
            ..manifest::HandlerSchedule::default()
        },
        manifest::HandlerSchedule {
            overlap: Some("sometimes".into()),
            ..every(1000, "k")
        },
        manifest::HandlerSchedule {
            name: Some("not a name".into()),
            ..every(1000, "k")
        },
    ];
    for declared in cases {
        let refusal = refused(
            &mut registry,
            &register(
                1,
                A,
                manifest(vec![counter_declaring(vec![declared.clone()])]),
                false,
            ),
        );
        assert!(
            matches!(&refusal, Refusal::InvalidSchedule(m) if m.contains("Counter/add")),
            "{declared:?}: {refusal:?}"
        );
    }
    let named = |n: &str| manifest::HandlerSchedule {
        name: Some(n.into()),
        ..every(1000, "k")
    };
    let twice = counter_declaring(vec![named("x"), named("x")]);
    let refusal = refused(&mut registry, &register(1, A, manifest(vec![twice]), false));
    assert!(
        matches!(refusal, Refusal::InvalidSchedule(_)),
        "{refusal:?}"
    );
    assert_eq!(registry.schedules().count(), 0);
}
