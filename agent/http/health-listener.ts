// The health port's listener: the only one on every address without a token, so the only
// one whose connections a stranger controls. Bun.serve has no limit on open connections, and
// idle connections held open by one host filled the agent's file descriptors (its probes then
// timed out). This listener takes TCP connections itself (Bun.listen), caps them in total and
// per client address, closes a connection that has not sent a whole request within a few
// seconds, reads one request line and its headers (8 KiB at most), and hands a GET or HEAD to
// the same hono app the other listeners use. Every answer closes the connection: kubelet and
// the peers' probes open one per probe.
import type { Hono } from "hono";
import type { TCPSocketListener, Socket } from "bun";

export interface HealthListenerOptions {
  host: string;
  port: number;
  app: Hono;
  /** connections open at once, in all (default 256) */
  maxConnections?: number;
  /** connections open at once from one client address (default 16) */
  perClient?: number;
  /** seconds a connection may take to send its request (default 5) */
  requestSeconds?: number;
}

const MAX_HEAD = 8192;

interface Conn {
  ip: string;
  buf: string;
  done: boolean;
}

const STATUS_TEXT: Record<number, string> = { 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large", 414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable" };

function raw(status: number, body: string, type = "application/json", head = false): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Status"}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? "" : body}`;
}

const error = (status: number, message: string) => raw(status, JSON.stringify({ error: message }));

export function listenHealth(o: HealthListenerOptions): { port: number; stop(): void; open(): number } {
  const max = o.maxConnections ?? 256;
  const perClient = o.perClient ?? 16;
  let open = 0;
  const byClient = new Map<string, number>();
  const finish = (s: Socket<Conn>, text: string) => {
    s.data.done = true;
    s.end(text);
  };
  const respond = async (s: Socket<Conn>, head: string) => {
    const line = head.slice(0, head.indexOf("\r\n"));
    const m = /^([A-Z]{1,16}) (\/[!-~]{0,255}) HTTP\/1\.[01]$/.exec(line);
    if (!m) return finish(s, error(400, "not an HTTP/1.x request line with a path"));
    const method = m[1]!;
    // HTTP/1.1 names the Host (RFC 9112 3.2); HTTP/1.0 need not
    if (line.endsWith("1.1") && !/\r\nhost:[ \t]*\S/i.test(head)) return finish(s, error(400, "an HTTP/1.1 request without a Host header"));
    if (method !== "GET" && method !== "HEAD") return finish(s, error(405, `method ${method} not allowed`));
    if (/\r\ncontent-length: *[1-9]|\r\ntransfer-encoding:/i.test(head)) return finish(s, error(413, "a GET takes no body"));
    let res: Response;
    try {
      res = await o.app.fetch(new Request(`http://health${m[2]}`, { method }), { ip: s.data.ip });
    } catch {
      return finish(s, error(400, "bad request"));
    }
    const body = await res.text();
    if (s.data.done) return;
    finish(s, raw(res.status, body, res.headers.get("content-type") ?? "application/json", method === "HEAD"));
  };
  const listener: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: o.host,
    port: o.port,
    socket: {
      open(s) {
        const ip = s.remoteAddress;
        s.data = { ip, buf: "", done: false };
        const n = byClient.get(ip) ?? 0;
        open++;
        byClient.set(ip, n + 1);
        if (open > max || n + 1 > perClient) return finish(s, error(503, "too many connections"));
        s.timeout(o.requestSeconds ?? 5);
      },
      data(s, d) {
        if (s.data.done) return;
        s.data.buf += d.toString("latin1");
        const end = s.data.buf.indexOf("\r\n\r\n");
        if (end < 0) {
          if (s.data.buf.length > MAX_HEAD) finish(s, error(431, `request head larger than ${MAX_HEAD} bytes`));
          return;
        }
        if (end > MAX_HEAD) return finish(s, error(431, `request head larger than ${MAX_HEAD} bytes`));
        void respond(s, s.data.buf.slice(0, end + 2));
      },
      timeout(s) {
        if (!s.data.done) finish(s, error(408, "the request did not come in time"));
        // an answer the client does not read: the connection goes anyway
        else s.terminate();
      },
      close(s) {
        open--;
        const n = (byClient.get(s.data.ip) ?? 1) - 1;
        if (n > 0) byClient.set(s.data.ip, n);
        else byClient.delete(s.data.ip);
      },
      error() {},
    },
  });
  return { port: listener.port, stop: () => listener.stop(true), open: () => open };
}
