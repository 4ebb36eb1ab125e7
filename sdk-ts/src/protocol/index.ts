/** The Holdfast service protocol: message types, frame codec, awakeable ids and discovery manifest. */
export * from "./messages.js";
export * from "./frame.js";
export * from "./ids.js";
export * from "./manifest.js";
