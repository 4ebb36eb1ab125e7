/**
 * `@holdfast/sdk`: write services, virtual objects and workflows whose every step is journaled by
 * the Holdfast kernel, so that a crash or a retry resumes them where they were.
 */
export { service, object, workflow, handlers } from "./definitions.js";
export type {
  AnyHandler,
  AttemptOptions,
  Definition,
  HandlerOptions,
  RetryPolicy,
  ScheduleOptions,
  ServiceOptions,
  ObjectDefinition,
  ServiceDefinition,
  WorkflowDefinition,
} from "./definitions.js";
export { endpoint, createEndpointHandler, serve, Endpoint } from "./endpoint.js";
export type { EndpointOptions, NodeHandler } from "./endpoint.js";
export { IdentityVerifier } from "./identity.js";
export { SDK_VERSION } from "./version.js";
export { rpc, CallOptions, SendOptions } from "./context.js";
export type {
  Client,
  ClientSendOptions,
  Context,
  ContextDate,
  GenericCall,
  GenericSend,
  ObjectContext,
  ObjectSharedContext,
  Rand,
  Request,
  SendClient,
  WorkflowContext,
  WorkflowPromise,
  WorkflowSharedContext,
} from "./context.js";
export { DurablePromise, RestatePromise } from "./promise.js";
export type { SettledResult } from "./promise.js";
export type { RunOptions } from "./invocation.js";
export { TerminalError, CancelledError, TimeoutError } from "./errors.js";
export type { TerminalErrorOptions } from "./errors.js";
export { serde } from "./serde.js";
export type { Serde } from "./serde.js";
export type { Duration } from "./duration.js";
