// Talks to a `skein apiserver` (the tests' and the demo's) that runs in another network
// namespace, through its Unix socket (a socket file crosses namespaces; its TCP port does not).
export class ApiDriver {
  constructor(
    private readonly unix: string,
    private readonly token: string,
  ) {}

  async request<T = any>(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<T> {
    const r = await fetch(`http://localhost${path}`, {
      method,
      unix: this.unix,
      headers: { Authorization: `Bearer ${this.token}`, ...(body !== undefined ? { "Content-Type": contentType } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    } as RequestInit);
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return JSON.parse(text) as T;
  }

  create(path: string, o: unknown) {
    return this.request("POST", path, o);
  }

  /** Replaces (PUT) an object after reading its current version. */
  async replace(path: string, f: (o: any) => any) {
    const cur = await this.request("GET", path);
    return this.request("PUT", path, f(cur));
  }

  delete(path: string) {
    return this.request("DELETE", path);
  }
}
