import { expect, test } from "bun:test";
import { startNats } from "./nats.ts";

test("startNats runs a real nats-server with JetStream on loopback", async () => {
  const nats = await startNats();
  try {
    const info = await new Promise<string>((resolve, reject) => {
      Bun.connect({
        hostname: "127.0.0.1",
        port: nats.port,
        socket: {
          data(s, d) {
            resolve(d.toString());
            s.end();
          },
          connectError: (_s, e) => reject(e),
        },
      });
    });
    expect(info).toStartWith("INFO ");
    expect(JSON.parse(info.slice(5)).jetstream).toBe(true);
  } finally {
    await nats.stop();
  }
});
