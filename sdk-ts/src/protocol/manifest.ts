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

/** One handler of a service as announced by discovery. */
export interface HandlerManifest {
  name: string;
  kind: HandlerKind;
  input: string;
  output: string;
}

/** One service as announced by discovery. */
export interface ServiceManifest {
  name: string;
  type: ServiceType;
  handlers: HandlerManifest[];
}

/** The whole discovery document. */
export interface Manifest {
  min_protocol_version: number;
  max_protocol_version: number;
  protocol_modes: ProtocolMode[];
  services: ServiceManifest[];
}
