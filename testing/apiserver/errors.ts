// The error every layer of the test API server throws: kube-apiserver's Status object.

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
