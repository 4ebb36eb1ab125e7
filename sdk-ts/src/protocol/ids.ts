/**
 * Awakeable ids: `awk_` + base64url(invocation id, UTF-8, unpadded) + `_` + entry index in decimal.
 * The kernel parses them to route a resolution to the awakeable entry of the right invocation.
 */

const PREFIX = "awk_";

/** The id of the awakeable created by entry `index` of invocation `invocationId`. */
export function awakeableId(invocationId: string, index: number): string {
  return `${PREFIX}${Buffer.from(invocationId, "utf8").toString("base64url")}_${index}`;
}

/** Splits an awakeable id into its invocation id and entry index, or returns undefined if malformed. */
export function parseAwakeableId(id: string): { invocationId: string; index: number } | undefined {
  const sep = id.lastIndexOf("_");
  if (!id.startsWith(PREFIX) || sep < PREFIX.length) return undefined;
  const encoded = id.slice(PREFIX.length, sep);
  const digits = id.slice(sep + 1);
  if (!/^[A-Za-z0-9_-]*$/.test(encoded) || !/^(0|[1-9][0-9]{0,9})$/.test(digits)) return undefined;
  const index = Number(digits);
  if (index > 0xffff_ffff) return undefined;
  return { invocationId: Buffer.from(encoded, "base64url").toString("utf8"), index };
}
