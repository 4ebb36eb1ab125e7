/**
 * Awakeable ids: `awk_` + hex(invocation id, 24 bytes) + hex(entry index, u32 big-endian) +
 * hex(token, 16 bytes), lower case, 92 characters in all.
 *
 * The invocation id and the index tell the kernel which entry to complete. The token is the first
 * 16 bytes of SHA-256("holdfast-awakeable" ‖ secret ‖ index as u32 big-endian), where the secret is
 * the 16 bytes the kernel sends in `start.secret` and shows nobody else: knowing an invocation id,
 * which every caller gets, is not enough to forge or guess the id of one of its awakeables.
 */
import { createHash } from "node:crypto";

/** Length of an invocation's secret, in bytes. */
export const SECRET_BYTES = 16;
/** Length of an awakeable id's token, in bytes. */
export const TOKEN_BYTES = 16;

const PREFIX = "awk_";
const TOKEN_DOMAIN = "holdfast-awakeable";
const INVOCATION_ID = /^inv_([0-9a-f]{48})$/;
const AWAKEABLE_ID = /^awk_([0-9a-f]{48})([0-9a-f]{8})([0-9a-f]{32})$/;

/** What an awakeable id is made of. */
export interface AwakeableIdParts {
  /** The invocation that created the awakeable (`inv_` + 48 hex digits). */
  invocationId: string;
  /** Index of its `awakeable` entry. */
  index: number;
  /** The token derived from the invocation's secret and `index`. */
  token: Uint8Array;
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff_ffff) {
    throw new TypeError(`awakeable entry index ${index} is not a u32`);
  }
}

/** The token of awakeable entry `index` under an invocation's 16-byte `secret`. */
export function awakeableToken(secret: Uint8Array, index: number): Uint8Array {
  if (secret.length !== SECRET_BYTES) throw new TypeError(`an invocation secret has ${SECRET_BYTES} bytes, not ${secret.length}`);
  checkIndex(index);
  const be = Buffer.alloc(4);
  be.writeUInt32BE(index);
  const digest = createHash("sha256").update(TOKEN_DOMAIN).update(secret).update(be).digest();
  return new Uint8Array(digest.subarray(0, TOKEN_BYTES));
}

/**
 * The id of the awakeable created by entry `index` of invocation `invocationId`, whose secret is
 * `secret` (`start.secret`). Throws a TypeError if the invocation id or the secret is malformed.
 */
export function awakeableId(invocationId: string, index: number, secret: Uint8Array): string {
  const match = INVOCATION_ID.exec(invocationId);
  if (!match) throw new TypeError(`'${invocationId}' is not an invocation id (inv_ followed by 48 lower-case hex digits)`);
  const token = awakeableToken(secret, index);
  return `${PREFIX}${match[1]}${index.toString(16).padStart(8, "0")}${Buffer.from(token).toString("hex")}`;
}

/** The parts of an awakeable id, or undefined if `id` is not one (whether its token is genuine is for the kernel to tell). */
export function parseAwakeableId(id: string): AwakeableIdParts | undefined {
  const match = AWAKEABLE_ID.exec(id);
  if (!match) return undefined;
  const [, invocation, index, token] = match as unknown as [string, string, string, string];
  return { invocationId: `inv_${invocation}`, index: parseInt(index, 16), token: new Uint8Array(Buffer.from(token, "hex")) };
}

/** Whether `id` has the form of an awakeable id (its token aside, which only the kernel can check). */
export function isAwakeableId(id: unknown): id is string {
  return typeof id === "string" && AWAKEABLE_ID.test(id);
}
