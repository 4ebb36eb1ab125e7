/**
 * Framing of the Holdfast service protocol: an 8-byte big-endian header (type u16, flags u16,
 * body length u32) followed by a canonical MessagePack body (map keys sorted, absent fields omitted).
 */
import { decode, encode } from "@msgpack/msgpack";
import { decodeBodyFast, encodeFrameFast } from "./fast.js";
import {
  FLAG_ACK,
  MESSAGE_TYPES,
  ProtocolError,
  SCHEMAS,
  checkBody,
  messageName,
  type Message,
  type MessageName,
} from "./messages.js";

/** Size of the fixed frame header in bytes. */
export const HEADER_LEN = 8;

/** Default upper bound on a frame body; larger frames are refused before any allocation. */
export const DEFAULT_MAX_FRAME_LEN = 16 * 1024 * 1024;

/**
 * The largest message (journal entry, run result) the kernel accepts by default: its
 * `invocation.max_message_bytes`, a frame less 64 KiB of framing. A larger one fails the
 * invocation with a terminal error (413) before it is sent.
 */
export const MAX_MESSAGE_BYTES = DEFAULT_MAX_FRAME_LEN - 64 * 1024;

const KNOWN_FLAGS = FLAG_ACK;

/**
 * Encodes one message into a complete frame (header and body). The frame may be a view of a larger
 * buffer shared with other frames (mind `byteOffset`).
 */
export function encodeMessage(message: Message): Uint8Array {
  const body = message.body as Record<string, unknown>;
  const fast = encodeFrameFast(message.type, message.flags ?? 0, body);
  if (fast !== undefined) return fast;
  const fields: Record<string, unknown> = {};
  for (const field of Object.keys(SCHEMAS[message.type])) {
    if (body[field] !== undefined) fields[field] = body[field];
  }
  const payload = encode(fields, { sortKeys: true, ignoreUndefined: true });
  const frame = new Uint8Array(HEADER_LEN + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint16(0, MESSAGE_TYPES[message.type]);
  view.setUint16(2, message.flags ?? 0);
  view.setUint32(4, payload.length);
  frame.set(payload, HEADER_LEN);
  return frame;
}

/** Decodes the body of a frame, bytes `start` to `end` of `data`. */
function decodeBody(type: MessageName, flags: number, data: Uint8Array, start: number, end: number): Message {
  const fast = decodeBodyFast(type, data, start, end);
  if (fast !== undefined) return { type, flags, body: fast } as Message;
  let raw: unknown;
  try {
    raw = decode(data.subarray(start, end));
  } catch (e) {
    throw new ProtocolError("invalid_body", `${type}: ${(e as Error).message}`);
  }
  return { type, flags, body: checkBody(type, raw) } as Message;
}

/**
 * Incremental decoder for a byte stream of frames: feed chunks with `push`, which returns the
 * messages completed so far; `finish` reports a frame cut off by the end of the stream.
 */
export class FrameDecoder {
  /** Chunks not consumed yet; the first one from `offset` on. */
  private chunks: Uint8Array[] = [];
  private offset = 0;
  /** Bytes not consumed yet. */
  private buffered = 0;
  /** Total size (header and body) of the frame at the head of the buffer, once its header is known. */
  private needed = HEADER_LEN;
  /** Whether the header of the frame at the head of the buffer has been read (its body may be empty). */
  private headerRead = false;

  constructor(private readonly maxFrameLen: number = DEFAULT_MAX_FRAME_LEN) {}

  /** Appends a chunk and returns every message it completes, in order. */
  push(chunk: Uint8Array): Message[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Message[] = [];
    try {
      while (this.buffered >= this.needed) {
        // The frame's first `needed` bytes, in one piece.
        let data = this.chunks[0] as Uint8Array;
        let at = this.offset;
        if (data.length - at < this.needed) {
          data = concatFrames(this.offset > 0 ? [data.subarray(at), ...this.chunks.slice(1)] : this.chunks);
          at = 0;
          this.chunks = [data];
          this.offset = 0;
        }
        if (!this.headerRead) {
          this.needed = HEADER_LEN + this.checkHeader(data, at);
          this.headerRead = true;
          continue;
        }
        const type = messageName(u16(data, at)) as MessageName;
        out.push(decodeBody(type, u16(data, at + 2), data, at + HEADER_LEN, at + this.needed));
        this.offset = at + this.needed;
        this.buffered -= this.needed;
        if (this.offset === data.length) {
          this.chunks.shift();
          this.offset = 0;
        }
        this.needed = HEADER_LEN;
        this.headerRead = false;
      }
    } catch (error) {
      // Malformed input: what was buffered is dropped.
      this.chunks = [];
      this.offset = 0;
      this.buffered = 0;
      throw error;
    }
    return out;
  }

  /** Throws if the stream ended in the middle of a frame. */
  finish(): void {
    if (this.buffered > 0) {
      throw new ProtocolError("truncated", `stream ended inside a frame (${this.buffered} bytes left over)`);
    }
  }

  /** Validates the frame header at `at` of `data` before its body is buffered and returns the body length. */
  private checkHeader(data: Uint8Array, at: number): number {
    const code = u16(data, at);
    const flags = u16(data, at + 2);
    const length = u16(data, at + 4) * 0x10000 + u16(data, at + 6);
    // Type and flags first: a header that names no message is garbage, whatever length it claims;
    // only a well-formed header with too long a body is a message above the limit.
    if (messageName(code) === undefined) {
      throw new ProtocolError("unknown_type", `unknown message type 0x${code.toString(16).padStart(4, "0")}`);
    }
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new ProtocolError("reserved_flags", `reserved flag bits set: 0x${flags.toString(16)}`);
    if (length > this.maxFrameLen) {
      throw new ProtocolError("frame_too_long", `frame body of ${length} bytes exceeds the limit of ${this.maxFrameLen}`);
    }
    return length;
  }
}

/** The big-endian u16 at `offset` of `data`. */
function u16(data: Uint8Array, offset: number): number {
  return ((data[offset] as number) << 8) | (data[offset + 1] as number);
}

/** Decodes a buffer holding whole frames only. */
export function decodeMessages(bytes: Uint8Array, maxFrameLen?: number): Message[] {
  const decoder = new FrameDecoder(maxFrameLen);
  const messages = decoder.push(bytes);
  decoder.finish();
  return messages;
}

/** Concatenates frames into one buffer (a request/response body). */
export function concatFrames(frames: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let offset = 0;
  for (const f of frames) {
    out.set(f, offset);
    offset += f.length;
  }
  return out;
}
