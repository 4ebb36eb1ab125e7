/**
 * Request identity, Restate's scheme `v1`: the kernel signs every request to an endpoint with its
 * ed25519 key; an endpoint configured with the kernel's public keys (`publickeyv1_<base58>`)
 * refuses every request that is not signed by one of them.
 *
 * A signed request carries `x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT>`, an
 * EdDSA JWT whose claims are `aud` (the request path), `iat`, `nbf` and `exp` (seconds).
 */
import { createPublicKey, timingSafeEqual, verify, type KeyObject } from "node:crypto";

/** Header naming the signature scheme of a request. */
export const SIGNATURE_SCHEME_HEADER = "x-restate-signature-scheme";
/** Header carrying the scheme `v1` JWT. */
export const JWT_V1_HEADER = "x-restate-jwt-v1";
/** Prefix of a serialized public key. */
export const PUBLIC_KEY_PREFIX = "publickeyv1_";

const BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** Base58 (Bitcoin alphabet) encoding of `bytes`. */
export function base58Encode(bytes: Uint8Array): string {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  const digits: number[] = [];
  for (let i = zeros; i < bytes.length; i++) {
    let carry = bytes[i] as number;
    for (let j = 0; j < digits.length; j++) {
      carry += (digits[j] as number) * 256;
      digits[j] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = Math.floor(carry / 58);
    }
  }
  return "1".repeat(zeros) + digits.reverse().map((d) => BASE58_ALPHABET[d]).join("");
}

/** Decodes base58 (Bitcoin alphabet); throws on a character outside the alphabet. */
export function base58Decode(text: string): Uint8Array {
  let zeros = 0;
  while (zeros < text.length && text[zeros] === "1") zeros++;
  const bytes: number[] = [];
  for (let i = zeros; i < text.length; i++) {
    let carry = BASE58_ALPHABET.indexOf(text[i] as string);
    if (carry < 0) throw new Error(`invalid base58 character ${JSON.stringify(text[i])}`);
    for (let j = 0; j < bytes.length; j++) {
      carry += (bytes[j] as number) * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes.push(carry & 0xff);
      carry >>= 8;
    }
  }
  return Uint8Array.from([...new Array<number>(zeros).fill(0), ...bytes.reverse()]);
}

/** Parses a `publickeyv1_…` key into an ed25519 public key; throws naming what is wrong. */
export function parsePublicKey(text: string): KeyObject {
  if (!text.startsWith(PUBLIC_KEY_PREFIX)) throw new Error(`identity keys must start with ${PUBLIC_KEY_PREFIX}`);
  const raw = base58Decode(text.slice(PUBLIC_KEY_PREFIX.length));
  if (raw.length !== 32) throw new Error(`an identity key must decode to 32 bytes, not ${raw.length}`);
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
}

/**
 * The path a token's audience is compared with, as Restate's SDKs normalise it: an endpoint
 * mounted under a prefix compares `/invoke/{service}/{handler}` and `/discover`.
 */
export function normalisePath(path: string): string {
  const invoke = /\/invoke\/[^/]+\/[^/]+$/.exec(path);
  if (invoke) return invoke[0];
  if (path.endsWith("/discover")) return "/discover";
  return path;
}

/** Why a request was refused, or `undefined` when it may be served. */
export type IdentityRefusal = string | undefined;

/** Checks requests against a set of public keys; with none, accepts everything. */
export class IdentityVerifier {
  private readonly keys: KeyObject[];

  /** Parses every key; throws on one that is not a `publickeyv1_…` ed25519 key. */
  constructor(keys: readonly string[]) {
    this.keys = keys.map(parsePublicKey);
  }

  /** Whether any key is configured (requests are verified). */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /**
   * Checks the request to `path` (without its query) whose headers `header` reads, at `nowSeconds`;
   * returns why it is refused, or `undefined`.
   */
  check(path: string, header: (name: string) => string | undefined, nowSeconds = Date.now() / 1000): IdentityRefusal {
    if (!this.enabled) return undefined;
    const scheme = header(SIGNATURE_SCHEME_HEADER);
    if (scheme === undefined) return `missing header ${SIGNATURE_SCHEME_HEADER}`;
    if (scheme === "unsigned") return "unsigned request, expecting requests signed with a configured key";
    if (scheme !== "v1") return `unsupported signature scheme ${JSON.stringify(scheme.slice(0, 32))}`;
    const jwt = header(JWT_V1_HEADER);
    if (jwt === undefined) return `missing header ${JWT_V1_HEADER}`;
    const parts = jwt.split(".");
    if (parts.length !== 3) return "malformed JWT";
    const [head, body, signature] = parts as [string, string, string];
    let header_: unknown;
    let claims: unknown;
    try {
      header_ = JSON.parse(Buffer.from(head, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
    } catch {
      return "malformed JWT";
    }
    if (!isRecord(header_) || header_.alg !== "EdDSA") return "the JWT must be signed with EdDSA";
    const sig = Buffer.from(signature, "base64url");
    if (sig.length !== 64) return "malformed JWT signature";
    const input = Buffer.from(`${head}.${body}`, "ascii");
    if (!this.keys.some((key) => verify(null, input, key, sig))) return "the JWT is not signed by any configured key";
    if (!isRecord(claims)) return "malformed JWT claims";
    const { aud, exp, nbf, iat } = claims;
    if (typeof exp !== "number" || typeof nbf !== "number" || typeof iat !== "number") {
      return "the JWT must carry numeric exp, nbf and iat claims";
    }
    if (nowSeconds >= exp) return "the JWT has expired";
    if (nowSeconds < nbf) return "the JWT is not valid yet";
    const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === "string") : [];
    const expected = [path, normalisePath(path)];
    if (!audiences.some((a) => expected.some((e) => sameText(a, e)))) return "the JWT's audience is not this request's path";
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Compares two strings in time independent of where they differ. */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}
