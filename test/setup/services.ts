// Global test setup: starts the real services the tests use (filled in by the tracking work).
export default async function setup(): Promise<() => Promise<void>> {
  return async () => {};
}
