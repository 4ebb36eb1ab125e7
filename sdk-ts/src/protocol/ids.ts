/**
 * Awakeable ids: `awk_` + hex(invocation id, 24 bytes) + hex(entry index, u32 big-endian) +
 * hex(token, 16 bytes), lower case, 92 characters in all.
 *
 * The invocation id and the index tell the kernel which entry to complete. The token is the first
 * 16 bytes of HMAC-SHA256(key, index as u32 big-endian), where the key is the invocation's 32-byte
 * awakeable key, sent by the kernel in `start.awakeable_key` and shown to nobody else: knowing an
 * invocation id, which every caller gets, is not enough to forge or guess the id of one of its
 * awakeables. The kernel derives the key one-way from the invocation's secret, which it keeps to
 * itself; the key signs this invocation's awakeable ids and nothing else.
 */
import { createHmac } from "node:crypto";

/** Length of an invocation's awakeable key (`start.awakeable_key`), in bytes. */
export const AWAKEABLE_KEY_BYTES = 32;
/** Length of an awakeable id's token, in bytes. */
export const TOKEN_BYTES = 16;

const PREFIX = "awk_";
const INVOCATION_ID = /^inv_([0-9a-f]{48})$/;
const AWAKEABLE_ID = /^awk_([0-9a-f]{48})([0-9a-f]{8})([0-9a-f]{32})$/;

const BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Byte `i` of lower-case `hex`. */
function hexByte(hex: string, i: number): number {
  const digit = (c: number) => (c <= 57 ? c - 48 : c - 87);
  return digit(hex.charCodeAt(2 * i)) * 16 + digit(hex.charCodeAt(2 * i + 1));
}

/**
 * The number written by big-endian `hex` bytes, byte-swapped (read little-endian), as exactly
 * `width` base62 digits.
 */
function swappedBase62(hex: string, width: number): string {
  // 16-bit limbs, most significant first: the last byte of `hex` weighs most.
  const bytes = hex.length >> 1;
  const limbs: number[] = [];
  for (let i = bytes - 1; i >= 0; i -= 2) {
    const high = hexByte(hex, i);
    const low = i > 0 ? hexByte(hex, i - 1) : -1;
    // An odd byte count leaves a last limb of one byte.
    limbs.push(low < 0 ? high : high * 256 + low);
  }
  const oddTail = bytes % 2 === 1;
  const codes: number[] = new Array(width);
  for (let k = width - 1; k >= 0; k--) {
    // Long division by 62; the remainder is the next base62 digit, least significant first.
    let remainder = 0;
    for (let i = 0; i < limbs.length; i++) {
      const base = oddTail && i === limbs.length - 1 ? 256 : 65536;
      const current = remainder * base + (limbs[i] as number);
      const quotient = Math.floor(current / 62);
      limbs[i] = quotient;
      remainder = current - quotient * 62;
    }
    codes[k] = BASE62.charCodeAt(remainder);
  }
  return String.fromCharCode(...codes);
}

/**
 * The public text of an invocation id, in Restate's form — `inv_1`, then the partition key in 11
 * and the nonce in 22 base62 digits (`0-9a-zA-Z`), each number byte-swapped — from the wire text
 * `start.id` carries (`inv_` + 48 hex digits), as the kernel's APIs show it; other text is
 * returned unchanged.
 */
export function publicInvocationId(wire: string): string {
  const match = INVOCATION_ID.exec(wire);
  if (!match) return wire;
  const hex = match[1] as string;
  return `inv_1${swappedBase62(hex.slice(0, 16), 11)}${swappedBase62(hex.slice(16), 22)}`;
}

/** What an awakeable id is made of. */
export interface AwakeableIdParts {
  /** The invocation that created the awakeable (`inv_` + 48 hex digits). */
  invocationId: string;
  /** Index of its `awakeable` entry. */
  index: number;
  /** The token made from the invocation's awakeable key and `index`. */
  token: Uint8Array;
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff_ffff) {
    throw new TypeError(`awakeable entry index ${index} is not a u32`);
  }
}

/** The token of awakeable entry `index` under an invocation's 32-byte awakeable `key`. */
export function awakeableToken(key: Uint8Array, index: number): Uint8Array {
  if (key.length !== AWAKEABLE_KEY_BYTES) throw new TypeError(`an awakeable key has ${AWAKEABLE_KEY_BYTES} bytes, not ${key.length}`);
  checkIndex(index);
  const be = Buffer.alloc(4);
  be.writeUInt32BE(index);
  const mac = createHmac("sha256", key).update(be).digest();
  return new Uint8Array(mac.subarray(0, TOKEN_BYTES));
}

/**
 * The id of the awakeable created by entry `index` of invocation `invocationId`, whose awakeable key
 * is `key` (`start.awakeable_key`). Throws a TypeError if the invocation id or the key is malformed.
 */
export function awakeableId(invocationId: string, index: number, key: Uint8Array): string {
  const match = INVOCATION_ID.exec(invocationId);
  if (!match) throw new TypeError(`'${invocationId}' is not an invocation id (inv_ followed by 48 lower-case hex digits)`);
  const token = awakeableToken(key, index);
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
