/** Serialization of handler inputs, outputs, state values and run results. */

/** Turns values into bytes and back; `contentType` is announced in the discovery manifest. */
export interface Serde<T> {
  contentType?: string;
  serialize(value: T): Uint8Array;
  deserialize(data: Uint8Array): T;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class JsonSerde<T> implements Serde<T | undefined> {
  contentType = "application/json";

  serialize(value: T | undefined): Uint8Array {
    return value === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(value));
  }

  deserialize(data: Uint8Array): T | undefined {
    return data.length === 0 ? undefined : (JSON.parse(decoder.decode(data)) as T);
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
