/** This SDK's version, as its package declares it. */

/** The version of the `@holdfast/sdk` package (kept equal to `package.json`'s by a test). */
export const SDK_VERSION = "0.1.0";

/** How an endpoint names this SDK in its discovery manifest's `sdk_version`. */
export const SDK_VERSION_NAME = `holdfast-sdk-typescript/${SDK_VERSION}`;
