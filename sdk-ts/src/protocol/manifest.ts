/** The discovery manifest an endpoint serves at `GET /discover` (JSON, snake_case keys). */

/** Protocol versions this SDK speaks; the kernel picks one inside the range. */
export const MIN_PROTOCOL_VERSION = 1;
/** Highest protocol version this SDK speaks. */
export const MAX_PROTOCOL_VERSION = 1;

/** Content type of an invocation request and response body (a sequence of frames). */
export const INVOCATION_CONTENT_TYPE = "application/vnd.holdfast.invocation.v1";
/** Content type of the discovery manifest. */
export const MANIFEST_CONTENT_TYPE = "application/vnd.holdfast.manifest.v1+json";
/** Request header choosing the protocol mode of an invocation. */
export const MODE_HEADER = "x-holdfast-mode";

/** How an invocation request exchanges frames. */
export type ProtocolMode = "stream" | "request-response";

/** The kind of a service: stateless, keyed with state, or keyed workflow. */
export type ServiceType = "service" | "object" | "workflow";

/** Concurrency of a handler: one at a time per key, concurrent read-only, or the workflow's run. */
export type HandlerKind = "exclusive" | "shared" | "workflow";

/**
 * Retry policy fields a service or handler declares (protocol §1); an absent field keeps the value
 * of the next level: handler > service > the kernel node's configuration.
 */
export interface RetryPolicyManifest {
  initial_interval_ms?: number;
  factor?: number;
  max_interval_ms?: number;
  max_attempts?: number;
  on_max_attempts?: "pause" | "kill";
}

/** Optional retry and timeout settings of a service or a handler; absent ones are omitted. */
export interface AttemptSettingsManifest {
  retry_policy?: RetryPolicyManifest;
  inactivity_timeout_ms?: number;
  abort_timeout_ms?: number;
}

/** A schedule a handler declares in code; the kernel creates it with the registration. */
export interface HandlerScheduleManifest {
  name?: string;
  cron?: string;
  timezone?: string;
  every_ms?: number;
  key?: string;
  input?: unknown;
  catch_up?: "skip" | "latest" | "all";
  catch_up_max?: number;
  overlap?: "skip" | "queue" | "allow";
}

/** One handler of a service as announced by discovery. */
export interface HandlerManifest extends AttemptSettingsManifest {
  name: string;
  kind: HandlerKind;
  input: string;
  output: string;
  schedules?: HandlerScheduleManifest[];
}

/** One service as announced by discovery. */
export interface ServiceManifest extends AttemptSettingsManifest {
  name: string;
  type: ServiceType;
  handlers: HandlerManifest[];
}

/** The whole discovery document. */
export interface Manifest {
  min_protocol_version: number;
  max_protocol_version: number;
  /** The SDK serving the endpoint and its version (e.g. `holdfast-sdk-typescript/0.1.0`), shown to operators. */
  sdk_version?: string;
  protocol_modes: ProtocolMode[];
  services: ServiceManifest[];
}
