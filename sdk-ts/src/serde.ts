/** Serialization of handler inputs, outputs, state values and run results. */

/** Turns values into bytes and back; `contentType` is announced in the discovery manifest. */
export interface Serde<T> {
  contentType?: string;
  serialize(value: T): Uint8Array;
  deserialize(data: Uint8Array): T;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Up to this length, ASCII text is converted here rather than by TextEncoder and TextDecoder,
 * which cost more for short text (and allocate outside the JavaScript heap).
 */
const SHORT_TEXT = 64;
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

/** UTF-8 bytes of `text` (as TextEncoder makes them). */
function utf8(text: string): Uint8Array {
  const n = text.length;
  if (n > SHORT_TEXT) return encoder.encode(text);
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return encoder.encode(text);
    bytes[i] = c;
  }
  return bytes;
}

/** The text of UTF-8 `bytes` (as TextDecoder reads it). */
function text(bytes: Uint8Array): string {
  const n = bytes.length;
  if (n > SHORT_TEXT || latin1Slice === undefined) return decoder.decode(bytes);
  for (let i = 0; i < n; i++) if ((bytes[i] as number) >= 0x80) return decoder.decode(bytes);
  return latin1Slice.call(bytes, 0, n);
}

class JsonSerde<T> implements Serde<T | undefined> {
  contentType = "application/json";

  serialize(value: T | undefined): Uint8Array {
    return value === undefined ? new Uint8Array(0) : utf8(JSON.stringify(value));
  }

  deserialize(data: Uint8Array): T | undefined {
    return data.length === 0 ? undefined : (JSON.parse(text(data)) as T);
  }
}

class BinarySerde implements Serde<Uint8Array> {
  contentType = "application/octet-stream";

  serialize(value: Uint8Array): Uint8Array {
    return value;
  }

  deserialize(data: Uint8Array): Uint8Array {
    return data;
  }
}

/** The built-in serdes: JSON (the default; `undefined` is the empty body) and raw bytes. */
export const serde = {
  json: new JsonSerde<any>() as Serde<any>,
  binary: new BinarySerde() as Serde<Uint8Array>,
};
