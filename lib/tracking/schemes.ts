// The one table of what the tracker connects to: which tracking-URI schemes name which kind of store, and which
// artifact locations name which kind of artifact repository. `createStore` (stores.ts), the configuration's
// validation of MLFLOW_TRACKING_URI (lib/config.ts) and `createArtifactRepository` (artifacts.ts) all read it.
// No imports on purpose: lib/config.ts loads this module, and must not load the stores' drivers.

/** The kinds of tracking store (each store class declares its own as `kind`). */
export type StoreKind = 'sqlite' | 'postgresql' | 'rest';

interface TrackingScheme {
  kind: StoreKind;
  /** The URI schemes of this kind, lower case. */
  schemes: readonly string[];
  /** How a URI of this kind is written (for error messages). */
  form: string;
  /** Why `uri` (of one of `schemes`) is malformed, or null. */
  check(uri: string): string | null;
}

const TRACKING_SCHEMES: readonly TrackingScheme[] = [
  {
    kind: 'sqlite',
    schemes: ['sqlite'],
    form: 'sqlite:///path.db',
    check: (uri) => (/^sqlite:\/\/\/./i.test(uri) ? null : `sqlite URI must look like sqlite:///relative.db or sqlite:////abs/path.db, got '${uri}'`),
  },
  {
    kind: 'postgresql',
    schemes: ['postgresql', 'postgresql+psycopg2', 'postgres'],
    form: 'postgresql://user:pass@host:port/db',
    check: () => null,
  },
  {
    kind: 'rest',
    schemes: ['http', 'https'],
    form: 'http(s)://host:port',
    check: (uri) => {
      try {
        new URL(uri);
        return null;
      } catch {
        return `not a valid URL: '${uri}'`;
      }
    },
  },
];

/** Every supported tracking-URI scheme, for messages and documentation. */
export const SUPPORTED_TRACKING_SCHEMES: readonly string[] = TRACKING_SCHEMES.flatMap((s) => s.schemes);

/**
 * What kind of store a tracking URI names, or what is wrong with it. Messages quote the URI as given: callers
 * pass it through `redact()` before showing it (a URI may hold a password).
 */
export function parseTrackingUri(uri: string): { kind: StoreKind; problem: null } | { kind: null; problem: string } {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
  const entry = TRACKING_SCHEMES.find((s) => scheme !== undefined && s.schemes.includes(scheme));
  if (!entry) {
    const forms = TRACKING_SCHEMES.map((s) => s.form);
    return {
      kind: null,
      problem: `unsupported tracking URI '${uri}': use ${forms.slice(0, -1).join(', ')} or ${forms[forms.length - 1]} (supported schemes: ${SUPPORTED_TRACKING_SCHEMES.join(', ')})`,
    };
  }
  const problem = entry.check(uri);
  return problem === null ? { kind: entry.kind, problem: null } : { kind: null, problem };
}

/** The kinds of artifact repository. */
export type ArtifactRepositoryKind = 'local' | 's3' | 'mlflow-artifacts';

const ARTIFACT_LOCATIONS: readonly { kind: ArtifactRepositoryKind; test: RegExp; form: string }[] = [
  // file:// URIs, and paths (anything without a scheme of two letters or more: C:\ is a path)
  { kind: 'local', test: /^(file:|(?![a-z][a-z0-9+.-]+:))/i, form: 'local paths, file://' },
  { kind: 's3', test: /^s3:\/\//i, form: 's3://bucket/prefix' },
  { kind: 'mlflow-artifacts', test: /^mlflow-artifacts:/i, form: 'mlflow-artifacts:/ (through the tracking server)' },
];

/** What kind of repository an artifact location (a run's or experiment's artifact URI) names, or what is wrong with it. */
export function parseArtifactLocation(uri: string): { kind: ArtifactRepositoryKind; problem: null } | { kind: null; problem: string } {
  const entry = ARTIFACT_LOCATIONS.find((l) => l.test.test(uri));
  if (entry) return { kind: entry.kind, problem: null };
  return { kind: null, problem: `Unsupported artifact URI '${uri}' (supported: ${ARTIFACT_LOCATIONS.map((l) => l.form).join(', ')})` };
}
