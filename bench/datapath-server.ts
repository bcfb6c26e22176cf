export {};
// Helper of bench/datapath.ts, run inside the backend namespace: a TCP server on PORT (every
// address) that reads and discards. A client that opens with a 4-byte length (big-endian) is
// answered one byte once that many more bytes have arrived. Prints "ready" once it listens.
const port = Number(process.argv[2] ?? 8080);
Bun.listen<{ want: number; got: number }>({
  hostname: "0.0.0.0",
  port,
  socket: {
    open(s) {
      s.data = { want: -1, got: 0 };
    },
    data(s, d) {
      const st = s.data;
      st.got += d.length;
      if (st.want < 0 && st.got >= 4) st.want = new DataView(d.buffer, d.byteOffset, 4).getUint32(0) + 4;
      if (st.want >= 0 && st.got >= st.want) {
        st.want = Infinity;
        s.end("k");
      }
    },
  },
});
console.log("ready");
await new Promise(() => {});
