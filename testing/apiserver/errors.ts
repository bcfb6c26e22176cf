// The error every layer of the test API server throws: kube-apiserver's Status object, and
// the field errors of a 422 Invalid.

/** A failure as kube-apiserver reports it: a Status object with a code and a reason. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
  status() {
    return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: this.message, reason: this.reason, ...(this.details ? { details: this.details } : {}), code: this.code };
  }
}

/** The ApiError that `f` throws (for tests: anything else thrown, or nothing, is an error). */
export function apiErrorOf(f: () => unknown): ApiError {
  try {
    f();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("no ApiError was thrown");
}

/** One field's problem, as k8s.io/apimachinery's field.Error carries it. */
export interface FieldError {
  field: string;
  value: unknown;
  detail: string;
  type?: "FieldValueInvalid" | "FieldValueRequired" | "FieldValueTypeInvalid" | "FieldValueNotSupported" | "FieldValueForbidden" | "FieldValueDuplicate" | "FieldValueTooLong" | "FieldValueTooMany";
}

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : typeof v === "object" && v !== null ? "object" : String(v));
/** A field error's message as kube-apiserver's field.Error words it. */
export function describe(e: FieldError): string {
  switch (e.type) {
    case "FieldValueRequired":
      return `Required value${e.detail ? `: ${e.detail}` : ""}`;
    case "FieldValueForbidden":
      return `Forbidden: ${e.detail}`;
    case "FieldValueDuplicate":
      return `Duplicate value: ${show(e.value)}`;
    case "FieldValueNotSupported":
      return `Unsupported value: ${show(e.value)}: supported values: ${e.detail}`;
    case "FieldValueTooLong":
      return `Too long: ${e.detail}`;
    case "FieldValueTooMany":
      return `Too many: ${show(e.value)}: ${e.detail}`;
    default:
      return `Invalid value: ${show(e.value)}: ${e.detail}`;
  }
}

/** 422 Invalid, worded and shaped as kube-apiserver's (causes name each field), for an
 * object of kind `t.kind` in group `t.group`. */
export function invalid(t: { group: string; kind: string }, name: string, errs: FieldError[]): ApiError {
  const lines = errs.map((e) => `${e.field}: ${describe(e)}`);
  const all = lines.length === 1 ? lines[0] : `[${lines.join(", ")}]`;
  // kube names the kind qualified by its group (schema.GroupKind's String)
  return new ApiError(422, "Invalid", `${t.group ? `${t.kind}.${t.group}` : t.kind} ${JSON.stringify(name)} is invalid: ${all}`, {
    name,
    ...(t.group ? { group: t.group } : {}),
    kind: t.kind,
    causes: errs.map((e) => ({ reason: e.type ?? "FieldValueInvalid", message: describe(e), field: e.field })),
  });
}
